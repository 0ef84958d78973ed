"""One trainer for every recipe of the registry: a recipe -> its model files, as resumable ``fit`` stages.

A recipe (:class:`mood_dpa.methods.registry.Recipe`) says what it trains on; this module turns that into
a config (the recipe's packaged config for the preset's group, the preset's overrides, and the run's
own paths, seed, device and threads) and calls the method's trainer (or its fitter), one stage per model.

Resuming: a training stage that did not finish continues from its run folder (:func:`resume_point`):
from ``checkpoints/last.ckpt`` when it loads, else from ``best.ckpt``, else it starts again in a clean
run folder; a run folder whose model file and summary are both written is a finished training.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..config import load_config
from ..errors import MoodError
from ..methods.registry import MethodEntry, Recipe
from ..methods.segmenter.settings import FAMILIES
from ..training.config import SimCLRConfig
from ..training.runner import MODEL_FILE, pretrain_simclr
from .presets import Preset

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class FitContext:
    """What every training stage of one fit shares."""

    stage: Callable[[str, Callable[[], Any]], Any]
    plan: Preset
    kind: str
    out: Path
    folds_csv: Path
    stores: dict[int, Path]
    train_vols: list[Path]
    seed: int
    device: str | None
    threads: int | None
    overrides: dict[str, list[str]] = field(default_factory=dict)  # recipe (or "simclr") -> --set overrides, last
    held_out: tuple[tuple[str, ...], ...] = ()  # family groups: one run of a family recipe without each group


def config_path(template: str, kind: str, axis: int | None = None) -> Path:
    path = CONFIG_DIR / template.format(kind=kind, axis=axis if axis is not None else 0)
    if not path.is_file():
        raise MoodError(f"no packaged config {template.format(kind=kind, axis=axis or 0)} for {kind}")
    return path


def common_overrides(run_dir: Path, ctx: FitContext) -> list[str]:
    over = [f"run_dir={run_dir}", f"trainer.seed={ctx.seed}"]
    if ctx.threads:  # else the config's own: the segmenters pin one thread (fast for small convs, and the same
        over.append(f"trainer.threads={ctx.threads}")  # bits on any load); null lets the thread governor adapt
    if ctx.device:
        over.append(f"trainer.accelerator={ctx.device}")
    return over


def stores_overrides(stores: Sequence[Path], folds: Path) -> list[str]:
    return [f"data.stores={json.dumps([str(s) for s in stores])}", f"data.folds={folds}", "data.fold=0"]


def _loads(ckpt: Path) -> bool:
    try:
        torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a checkpoint cut short by a kill
        return False
    return True


def resume_point(run_dir: Path) -> Path | None:
    """Where an interrupted training continues: a checkpoint that loads (last, else best), or None after
    clearing whatever partial run the folder holds (it is fit's own folder)."""
    ckpts = run_dir / "checkpoints"
    for name in ("last.ckpt", "best.ckpt"):
        if (ckpts / name).is_file() and _loads(ckpts / name):
            if name != "last.ckpt":
                (ckpts / "last.ckpt").unlink(missing_ok=True)  # a broken last.ckpt: continue from the best
                (ckpts / name).replace(ckpts / "last.ckpt")
            return ckpts / "last.ckpt"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run that never wrote a usable checkpoint: start again, clean
    return None


def train_resumable(train: Callable[..., Path], cfg: Any, run_dir: Path) -> str:
    """Train (or continue, or reuse a finished run of) one model; returns its model file."""
    model, summary = run_dir / MODEL_FILE, run_dir / "summary.json"
    if model.is_file() and summary.is_file():
        return str(model)  # finished before the stage could be recorded (a kill just after the export)
    return str(train(cfg, resume=resume_point(run_dir) is not None))


def simclr_backbone(ctx: FitContext) -> Path:
    """The SimCLR-pretrained VGG19 of this fit (one stage, shared by every recipe that needs it)."""
    run_dir = ctx.out / "runs" / "simclr"

    def go() -> str:
        over = common_overrides(run_dir, ctx) + stores_overrides(list(ctx.stores.values()), ctx.folds_csv)
        over += list(ctx.plan.simclr_overrides) + ctx.overrides.get("simclr", [])
        cfg = load_config(SimCLRConfig, config_path(ctx.plan.simclr_config, ctx.kind), over)
        vgg = run_dir / "vgg19_simclr.pt"
        if vgg.is_file() and (run_dir / "summary.json").is_file():
            return str(vgg)
        return str(pretrain_simclr(cfg, resume=resume_point(run_dir) is not None))

    return Path(ctx.stage("pretrain SimCLR backbone", go))


def enabled_groups(entry: MethodEntry, recipe: Recipe, ctx: FitContext, data: list[str]) -> list[tuple[str, ...]]:
    """The held-out groups that name a family the recipe's generator has switched on (``each`` lists every
    family; a run without a family that is off anyway would repeat the full mix). Holding out every enabled
    family leaves nothing to train on: a clear error before any training."""
    over = common_overrides(ctx.out / "runs" / recipe.name, ctx) + data
    over += list(recipe.overrides.get(ctx.plan.name, ())) + ctx.overrides.get(recipe.name, [])
    cfg = load_config(entry.config, config_path(recipe.configs[ctx.plan.group], ctx.kind, None), over)
    on = {f for f in FAMILIES if float(getattr(cfg.anomalies, f)) > 0}
    groups = [g for g in ctx.held_out if on & set(g)]
    for g in ctx.held_out:
        if on <= set(g):
            raise MoodError(f"--held-out {'+'.join(g)}: holds out every family {recipe.name} trains on "
                            f"({', '.join(sorted(on))}); leave at least one in")
    if not groups:
        raise MoodError(f"--held-out: {recipe.name} trains on {', '.join(sorted(on))}; no group names one of them")
    return groups


#: The run-folder and member suffix of a recipe's appearance twin (``fit --appearance-twin``).
TWIN = "+appearance"


def train_recipe(entry: MethodEntry, recipe: Recipe, ctx: FitContext, look: float = 0.0) -> list[str]:
    """Every model file of one recipe (one per axis for per-axis recipes), each its own resumable stage.
    ``look`` > 0: the recipe's appearance twin, trained with ``appearance.p = look`` (another scanner's look
    for that share of its training images) in run folders of its own (``<recipe>+appearance``)."""
    if recipe.fitter is not None:
        path = ctx.out / "models" / f"{recipe.name}.npz"
        fitter = recipe.fit
        return [ctx.stage(f"train {recipe.name}", lambda: str(fitter(ctx.train_vols, path, seed=ctx.seed, progress=False)))]
    if entry.train is None or entry.config is None:
        raise MoodError(f"method {entry.name}: recipe {recipe.name} has neither a trainer nor a fitter")
    if ctx.plan.group not in recipe.configs:
        raise MoodError(f"preset {ctx.plan.name!r}: {recipe.name} has no {ctx.plan.group} config")
    vgg = simclr_backbone(ctx) if recipe.backbone else None
    template = recipe.configs[ctx.plan.group]
    size = f"model.size={ctx.plan.slice_size}"
    name = recipe.name + (TWIN if look else "")

    def one(stage_name: str, run_dir: Path, axis: int | None, data: list[str]) -> str:
        def go() -> str:
            over = common_overrides(run_dir, ctx) + data
            over += list(recipe.overrides.get(ctx.plan.name, ()))
            if vgg is not None:
                over.append(f"loss.vgg={vgg}")
            over += ctx.overrides.get(recipe.name, []) + ([f"appearance.p={look}"] if look else [])
            cfg = load_config(entry.config, config_path(template, ctx.kind, axis), over)
            return train_resumable(entry.train, cfg, run_dir)

        return ctx.stage(stage_name, go)

    if recipe.families and ctx.held_out:
        if recipe.data != "volumes":
            data = stores_overrides(list(ctx.stores.values()), ctx.folds_csv) + [size]
        else:
            data = [f"data.volumes={Path(ctx.train_vols[0]).parent}", f"data.folds={ctx.folds_csv}", "data.fold=0"]
        files = []
        for group in enabled_groups(entry, recipe, ctx, data):  # each run trains without the group and
            tag = "+".join(group)                                  # validates (early stopping) on it alone
            over = data + [f"anomalies.{f}=0" for f in group] + [f"anomalies.val_families={json.dumps(list(group))}"]
            files.append(one(f"train {name} without {tag}", ctx.out / "runs" / f"{name}_without_{tag}", None, over))
        return files
    if recipe.data == "axis_stores":
        return [one(f"train {name} axis {a}", ctx.out / "runs" / f"{name}_axis{a}", a,
                    stores_overrides([store], ctx.folds_csv) + [size, f"name={name}_axis{a}"])
                for a, store in ctx.stores.items()]
    if recipe.data == "all_stores":
        data = stores_overrides(list(ctx.stores.values()), ctx.folds_csv) + [size]
    else:
        data = [f"data.volumes={Path(ctx.train_vols[0]).parent}", f"data.folds={ctx.folds_csv}", "data.fold=0"]
    return [one(f"train {name}", ctx.out / "runs" / name, None, data)]
