"""``mood-dpa fit``: the whole training pipeline in one resumable command.

DATA (volumes in MOOD form, e.g. from ``mood-dpa prepare``) ->
folds -> slice stores (one per axis) -> a tuning set (synthetic anomalies on the validation fold) ->
[SimCLR backbone] -> the models of every chosen recipe (:mod:`mood_dpa.methods.registry`) ->
one detector per recipe, calibrated on the NORMAL validation-fold volumes, rules chosen on the
tuning set -> one cross-method detector (its member combine rule chosen on the tuning set) ->
a validation report.

Why one command: training a detector is ten steps in a fixed order (folds, slices x3, pretrain,
train x3, ensemble, calibrate); only the demo used to chain them. Every stage records itself in
``MODELS/fit_state.json`` when it finishes (:mod:`.state`), so a rerun after a kill (SIGTERM or SIGKILL)
or a crash skips the finished stages and resumes an interrupted training from its last checkpoint
(:mod:`.train`). The options a run was started with, and the sha256 of every training volume, are
recorded too; a rerun with other options or changed volumes is refused (choose another output folder).

Honesty: the tuning set is made from the validation fold's volumes, which no model trained on, but
its numbers chose the calibration and the rules; the validation report says so. Evaluate on volumes
that ``fit`` never saw (``mood-dpa synth`` on a held-out folder), as the README and the demo do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..data.folds import make_folds, read_folds, write_folds_csv
from ..data.slices import SliceRule, build_store
from ..data.synth.layout import LOCAL_KINDS, make_synthetic_set
from ..errors import MoodError
from ..methods.registry import recipe, recipes
from ..outputs import mark_output_dir, prepare_output_dir
from ..runtime import check_device, check_seed
from ..volumes import list_volumes, volume_id
from .detectors import build_detector, validation_report
from .presets import ALL, AXES, PRESETS, Preset
from .presets import preset as preset_named
from .state import STATE_FILE, FitState, Stages, fingerprint
from .train import FitContext, train_recipe

__all__ = ["run_fit", "FitOutcome", "parse_methods", "PRESETS", "Preset", "AXES", "STATE_FILE"]


@dataclass
class FitOutcome:
    out: Path
    detector: Path | None
    detectors: dict[str, str]  # recipe -> detector file
    timings: dict[str, float]
    report: Path | None = None


def parse_methods(value: str | Sequence[str] | None, plan: Preset) -> tuple[str, ...]:
    """``--method`` ("all", one name, or a comma list; None: the preset's) -> recipe names in training order."""
    known = list(recipes())
    if value is None or value == "":
        names = known if plan.methods == ALL else list(plan.methods)
    else:
        names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
        if names == [ALL]:
            names = known
    bad = [n for n in names if n not in known]
    if bad:
        raise MoodError(f"--method: unknown method(s) {', '.join(bad)} (choose from all, {', '.join(known)})")
    return tuple(m for m in known if m in names)


def run_fit(
    data: str | Path,
    out: str | Path,
    *,
    preset: str = "demo",
    methods: str | Sequence[str] | None = None,
    kind: str = "brain",
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    report: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> FitOutcome:
    """Train every requested recipe on the volumes in ``data`` and write detectors into ``out``."""
    plan = preset_named(preset)
    if kind not in AXES:
        raise MoodError(f"--kind {kind!r}: choose brain or abdom")
    chosen = parse_methods(methods, plan)
    device = check_device(device, index=False)  # a device this machine lacks fails here, before any work
    check_seed(seed)
    # absolute: the fit state records paths, and a rerun may start from another working directory
    data, out = Path(data).resolve(), Path(out).resolve()
    vols = list_volumes(data)
    if len(vols) < 2 * plan.n_folds:
        raise MoodError(f"{data}: {len(vols)} volumes are too few for {plan.n_folds} folds (need at least {2 * plan.n_folds})")
    prepare_output_dir(out, inputs=[data], overwrite=overwrite)
    out = mark_output_dir(out)
    options = {"data": str(data), "preset": preset, "methods": list(chosen), "kind": kind, "seed": seed,
               "volumes": fingerprint(vols)}
    stage = Stages(FitState(out, options), log)
    log(f"mood-dpa fit ({preset}: {plan.description}): {len(vols)} {kind} volumes, methods {', '.join(chosen)}, into {out}")

    folds_csv = out / "folds.csv"
    stage("folds", lambda: str(write_folds_csv(folds_csv, make_folds([p.name for p in vols], plan.n_folds, seed))))
    fold_of = read_folds(folds_csv)
    val_vols = [p for p in vols if fold_of[volume_id(p)] == 0]
    train_vols = [p for p in vols if fold_of[volume_id(p)] != 0]
    log(f"    {len(train_vols)} training volumes, {len(val_vols)} validation volumes (fold 0)")

    stores: dict[int, Path] = {}
    if any(recipe(m)[1].needs_slices for m in chosen):
        for a in AXES[kind]:
            stores[a] = Path(stage(f"slices axis {a}", lambda a=a: str(
                build_store(vols, out / "slices" / f"axis_{a}", a, plan.slice_size, SliceRule()).path)))

    tuning = out / "tuning"
    stage("tuning set", lambda: len(make_synthetic_set(
        val_vols, tuning, list(LOCAL_KINDS), (1, 1), seed + 1000, cases_per_volume=plan.tuning_per_volume, progress=False)))

    ctx = FitContext(stage, plan, kind, out, folds_csv, stores, train_vols, seed, device, threads)
    models = {m: train_recipe(*recipe(m), ctx) for m in chosen}

    detectors: dict[str, str] = {}
    for m in chosen:
        detectors[m] = stage(f"detector {m}", lambda m=m: str(build_detector(
            out / "detectors" / f"{m}.yaml", {m: models[m]}, val_vols, tuning, device, seed)))
    members = {m: models[m] for m in chosen if recipe(m)[1].member}
    final: Path | None = None
    if len(members) > 1:
        final = Path(stage("detector ensemble", lambda: str(build_detector(
            out / "detector.yaml", members, val_vols, tuning, device, seed))))
    elif members:
        final = Path(detectors[next(iter(members))])
    report_path = None
    if report:
        report_path = Path(stage("validation report", lambda: str(validation_report(out, detectors, final, tuning))))
    return FitOutcome(out, final, detectors, stage.timings, report_path)

