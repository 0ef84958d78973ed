"""``mood-dpa fit``: the whole training pipeline in one resumable command.

DATA (volumes in MOOD form, e.g. from ``mood-dpa prepare``) ->
folds -> slice stores (one per axis) -> a tuning set (synthetic anomalies on the validation fold) ->
[SimCLR backbone] -> one model per method (and per axis for slice methods) ->
one detector per method, calibrated on the NORMAL validation-fold volumes, sample rule chosen on the
tuning set -> one cross-method detector (its member combine rule chosen on the tuning set) ->
a validation report.

Why one command: training a detector is ten steps in a fixed order (folds, slices x3, pretrain,
train x3, ensemble, calibrate); only the demo used to chain them. Every stage records itself in
``MODELS/fit_state.json`` when it finishes, so a rerun after a kill (or a crash) skips the finished
stages and resumes an interrupted training from its last checkpoint. The options a run was started
with are recorded too; a rerun with other options is refused (choose another output folder).

Honesty: the tuning set is made from the validation fold's volumes, which no model trained on, but
its numbers chose the calibration and the rules; the validation report says so. Evaluate on volumes
that ``fit`` never saw (``mood-dpa synth`` on a held-out folder), as the README and the demo do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .atomic import write_text
from .errors import MoodError

CONFIG_DIR = Path(__file__).parent / "configs"
STATE_FILE = "fit_state.json"
#: Axes the seed trained per dataset (abdomen: 0 and 2 only).
AXES = {"brain": (0, 1, 2), "abdom": (0, 2)}
#: Every method fit can train, in training order. "l1" is the plain-L1 autoencoder reference of the DPA.
METHODS = ("histogram", "dpa", "l1", "segmenter2d", "segmenter3d")
#: Methods the cross-method detector combines (the plain-L1 AE is a reference, not a member).
ENSEMBLE_METHODS = ("dpa", "segmenter2d", "segmenter3d", "histogram")
#: Local kinds of the tuning set (the same local kinds the evaluation uses by default).
TUNING_KINDS = ("ellipsoid", "uniform", "noise", "sink", "source", "shift", "reflect", "patch")


@dataclass(frozen=True)
class Preset:
    """Sizes of one fit: base configs (under the packaged ``configs/``) and overrides per method."""

    name: str
    slice_size: int
    n_folds: int
    methods: tuple[str, ...]
    configs: dict[str, str]
    overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tuning_per_volume: int | None = 1  # tuning cases per validation volume (None: one of every kind)
    description: str = ""


#: The packaged base configs of the demo-scale presets (quick, demo, cpu, long); each preset overrides sizes.
DEMO_CONFIGS: dict[str, str] = {
    "simclr": "demo/simclr.yaml", "dpa": "demo/dpa.yaml", "l1": "demo/l1.yaml",
    "segmenter2d": "segmenter/demo_2d.yaml", "segmenter3d": "segmenter/demo_3d.yaml",
}

#: The cpu preset's sizes (the demo's model shapes trained to early stopping), shared with the long preset.
CPU_OVERRIDES: dict[str, tuple[str, ...]] = {
    "simclr": ("optim.epochs=20", "optim.max_steps=2000"),
    "dpa": ("optim.max_steps=4800", "optim.val_every=200", "optim.batch_size=32", "model.channels=32",
            "model.latent=32"),
    "l1": ("optim.max_steps=4800", "optim.val_every=200", "optim.batch_size=32", "model.channels=32",
           "model.latent=32"),
    "segmenter2d": ("optim.max_steps=20000", "optim.val_every=500", "optim.patience=6"),
    "segmenter3d": ("optim.max_steps=10000", "optim.val_every=500", "optim.patience=6"),
}


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick", 32, 4, METHODS,
        DEMO_CONFIGS,
        {
            "simclr": ("model.width=0.125", "optim.max_steps=10", "augment.crop_size=32"),
            "dpa": ("model.channels=8", "model.latent=16", "model.size=32", "optim.max_steps=40", "optim.val_every=20",
                    "optim.batch_size=32", "loss.vgg_width=0.125"),
            "l1": ("model.channels=8", "model.latent=16", "model.size=32", "optim.max_steps=40", "optim.val_every=20",
                   "optim.batch_size=32"),
            "segmenter2d": ("optim.max_steps=40", "optim.val_every=20"),
            "segmenter3d": ("optim.max_steps=20", "optim.val_every=10"),
        },
        description="a smoke run: tiny models, a minute or two on a CPU (numbers mean nothing)",
    ),
    "demo": Preset(
        "demo", 64, 5, ("histogram", "dpa", "segmenter2d"),
        DEMO_CONFIGS,
        {
            "simclr": ("optim.max_steps=40", "augment.crop_size=48"),
            # the demo's ten minutes on 2 cores (benchmarks/bench_quality.py): 600 steps per axis at C=16 is
            # ~100 s an axis with both cores and pixel AP 0.052 (150 steps: 0.028; 2,400: 0.062); a cosine
            # schedule at twice the rate did worse (0.044); batch 16 at 1,200 steps (same time) 0.054; two
            # one-thread processes gained 4-24 % over two threads (BENCHMARKS.md)
            "dpa": ("optim.max_steps=600", "optim.val_every=150", "optim.batch_size=32", "model.latent=32"),
            "l1": ("optim.max_steps=600", "optim.val_every=150", "optim.batch_size=32", "model.latent=32"),
            "segmenter2d": ("optim.max_steps=2500",),
            # not in the demo's default methods (--method all adds it and the plain-L1 AE): 900 steps took
            # 132 s and stayed at the histogram's level; 3,000 steps took 431 s and reached 0.072
            "segmenter3d": ("optim.max_steps=900", "optim.val_every=300"),
        },
        description="the CPU demo scale: 64^3 volumes, 64x64 slices, narrow models, about ten minutes on 2 cores",
    ),
    "cpu": Preset(
        "cpu", 64, 5, ("histogram", "dpa", "segmenter2d"),
        DEMO_CONFIGS,
        CPU_OVERRIDES,
        tuning_per_volume=None,
        description="a CPU without a deadline: the demo's model shapes (64x64 slices, wider DPA) trained to early "
                    "stopping, hours on a few cores",
    ),
    # the demo's `--preset long`: the cpu preset's sizes for every method (the plain-L1 AE and the 3-D segmenter too)
    "long": Preset(
        "long", 64, 5, METHODS,
        DEMO_CONFIGS,
        CPU_OVERRIDES,
        tuning_per_volume=None,
        description="every method at the cpu preset's sizes, trained to early stopping (the demo's --preset long)",
    ),
    "seed": Preset(
        "seed", 128, 10, ("histogram", "dpa", "segmenter3d"),
        {"simclr": "simclr.yaml", "dpa": "{kind}/pixel/axis_{axis}.yaml", "l1": "{kind}/pixel/axis_{axis}.yaml",
         "segmenter2d": "segmenter/mood_{kind}_2d.yaml", "segmenter3d": "segmenter/mood_{kind}_3d.yaml"},
        {"l1": ("loss.kind=l1", "loss.normaliser=slice")},
        tuning_per_volume=None,
        description="the MOOD scale: the seed's submitted DPA configs (128x128, C=128, SimCLR VGG19), a GPU for days",
    ),
}


# ============================================================================ stages and their record


class FitState:
    """``fit_state.json``: the options of the run and every finished stage (written atomically)."""

    def __init__(self, out: Path, options: dict[str, Any]):
        self.path = out / STATE_FILE
        self.options = options
        self.stages: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise MoodError(f"{self.path}: unreadable fit state ({exc}); choose another output folder") from None
            if data.get("options") != options:
                diff = sorted(k for k in set(options) | set(data.get("options", {}))
                              if options.get(k) != data.get("options", {}).get(k))
                raise MoodError(f"{out}: an earlier fit with other options ({', '.join(diff)}) is here; "
                                "rerun it with the same options to continue, or choose another -o")
            self.stages = dict(data.get("stages", {}))
        self._save()

    def _save(self) -> None:
        write_text(self.path, json.dumps({"options": self.options, "stages": self.stages}, indent=1))

    def done(self, name: str) -> bool:
        return name in self.stages

    def result(self, name: str) -> Any:
        return self.stages[name]["result"]

    def finish(self, name: str, result: Any, seconds: float) -> None:
        self.stages[name] = {"result": result, "seconds": round(seconds, 2)}
        self._save()


class Stages:
    """Runs named stages once: a finished stage is skipped on a rerun and its recorded result returned."""

    def __init__(self, state: FitState, log: Callable[[str], None]):
        self.state, self.log = state, log
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.state.done(name):
            self.log(f"  {name}: done earlier, skipped")
            return self.state.result(name)
        self.log(f"  {name} ...")
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        self.state.finish(name, result, seconds)
        self.timings[name] = seconds
        self.log(f"  {name}: {seconds:.1f} s")
        return result


# ============================================================================ the pipeline


@dataclass
class FitOutcome:
    out: Path
    detector: Path | None
    detectors: dict[str, str]  # method -> detector file
    timings: dict[str, float]
    report: Path | None = None


def parse_methods(value: str | Sequence[str] | None, preset: Preset) -> tuple[str, ...]:
    """``--method`` ("all", one name, or a comma list) -> methods in training order."""
    if value is None or value == "":
        return preset.methods
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if names == ["all"]:
        return METHODS
    bad = [n for n in names if n not in METHODS]
    if bad:
        raise MoodError(f"--method: unknown method(s) {', '.join(bad)} (choose from all, {', '.join(METHODS)})")
    return tuple(m for m in METHODS if m in names)


def _config_path(preset: Preset, method: str, kind: str, axis: int | None = None) -> Path:
    rel = preset.configs[method].format(kind=kind, axis=axis if axis is not None else 0)
    path = CONFIG_DIR / rel
    if not path.is_file():
        raise MoodError(f"preset {preset.name!r}: no {method} config for {kind} (looked for {rel})")
    return path


def _common_overrides(run_dir: Path, seed: int, device: str | None, threads: int | None) -> list[str]:
    over = [f"run_dir={run_dir}", f"trainer.seed={seed}", f"trainer.threads={threads if threads else 'null'}"]
    if device:
        over.append(f"trainer.accelerator={device}")
    return over


def _stores_overrides(stores: Sequence[Path], folds: Path) -> list[str]:
    return [f"data.stores={json.dumps([str(s) for s in stores])}", f"data.folds={folds}", "data.fold=0"]


def _resume(run_dir: Path) -> bool:
    """A training that was interrupted (a checkpoint but no model file) continues where it stopped."""
    return (run_dir / "checkpoints" / "last.ckpt").is_file()


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
    """Train every requested method on the volumes in ``data`` and write detectors into ``out``."""
    from .data.folds import make_folds, read_folds, write_folds_csv
    from .data.slices import SliceRule, build_store
    from .data.synth.layout import make_synthetic_set
    from .volumes import list_volumes, volume_id

    if preset not in PRESETS:
        raise MoodError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if kind not in AXES:
        raise MoodError(f"--kind {kind!r}: choose brain or abdom")
    plan = PRESETS[preset]
    chosen = parse_methods(methods, plan)
    # absolute: the fit state records paths, and a rerun may start from another working directory
    data, out = Path(data).resolve(), Path(out).resolve()
    vols = list_volumes(data)
    if len(vols) < 2 * plan.n_folds:
        raise MoodError(f"{data}: {len(vols)} volumes are too few for {plan.n_folds} folds (need at least {2 * plan.n_folds})")
    out = _prepare_fit_output(data, out, overwrite)
    options = {"data": str(data.resolve()), "preset": preset, "methods": list(chosen), "kind": kind, "seed": seed,
               "volumes": [p.name for p in vols]}
    state = FitState(out, options)
    stage = Stages(state, log)
    log(f"mood-dpa fit ({preset}: {plan.description}): {len(vols)} {kind} volumes, methods {', '.join(chosen)}, into {out}")

    folds_csv = out / "folds.csv"
    stage("folds", lambda: str(write_folds_csv(folds_csv, make_folds([p.name for p in vols], plan.n_folds, seed))))
    fold_of = read_folds(folds_csv)
    val_vols = [p for p in vols if fold_of[volume_id(p)] == 0]
    train_vols = [p for p in vols if fold_of[volume_id(p)] != 0]
    log(f"    {len(train_vols)} training volumes, {len(val_vols)} validation volumes (fold 0)")

    axes = AXES[kind]
    needs_slices = any(m in chosen for m in ("dpa", "l1", "segmenter2d"))
    stores: dict[int, Path] = {}
    if needs_slices:
        for a in axes:
            stores[a] = Path(stage(f"slices axis {a}", lambda a=a: str(
                build_store(vols, out / "slices" / f"axis_{a}", a, plan.slice_size, SliceRule()).path)))

    tuning = out / "tuning"
    stage("tuning set", lambda: len(make_synthetic_set(
        val_vols, tuning, list(TUNING_KINDS), (1, 1), seed + 1000, cases_per_volume=plan.tuning_per_volume, progress=False)))

    models: dict[str, list[str]] = {}
    for method in chosen:
        trainer = _TRAINERS[method]
        models[method] = trainer(stage, plan, kind, out, folds_csv, stores, train_vols, seed, device, threads, models)

    detectors: dict[str, str] = {}
    for method in chosen:
        detectors[method] = stage(f"detector {method}", lambda m=method: str(_build_detector(
            out / "detectors" / f"{m}.yaml", {m: models[m]}, val_vols, tuning, device, seed)))
    members = {m: models[m] for m in chosen if m in ENSEMBLE_METHODS}
    final: Path | None = None
    if len(members) > 1:
        final = Path(stage("detector ensemble", lambda: str(_build_detector(
            out / "detector.yaml", members, val_vols, tuning, device, seed))))
    elif members:
        final = Path(detectors[next(iter(members))])
    report_path = None
    if report:
        report_path = Path(stage("validation report", lambda: str(_validation_report(out, detectors, final, tuning))))
    return FitOutcome(out, final, detectors, stage.timings, report_path)


def _prepare_fit_output(data: Path, out: Path, overwrite: bool) -> Path:
    """A new or empty folder, or one an earlier ``fit`` (any mood-dpa command) made; never the data folder,
    inside it, or holding it (the shared output rules of :mod:`mood_dpa.outputs`)."""
    from .outputs import mark_output_dir, prepare_output_dir

    prepare_output_dir(out, inputs=[data], overwrite=overwrite)
    return mark_output_dir(out)


# ============================================================================ one trainer per method


def _train_histogram(stage, plan, kind, out, folds_csv, stores, train_vols, seed, device, threads, models) -> list[str]:
    from .methods.histogram.model import fit_histogram

    path = out / "models" / "histogram.npz"

    def go() -> str:
        fit_histogram(train_vols, path, seed=seed, progress=False)
        return str(path)

    return [stage("train histogram", go)]


def _simclr(stage, plan, kind, out, folds_csv, stores, seed, device, threads) -> Path:
    from .config import load_config
    from .training.config import SimCLRConfig
    from .training.runner import pretrain_simclr

    run_dir = out / "runs" / "simclr"

    def go() -> str:
        over = _common_overrides(run_dir, seed, device, threads) + _stores_overrides(list(stores.values()), folds_csv)
        over += list(plan.overrides.get("simclr", ()))
        cfg = load_config(SimCLRConfig, _config_path(plan, "simclr", kind), over)
        return str(pretrain_simclr(cfg, resume=_resume(run_dir)))

    return Path(stage("pretrain SimCLR backbone", go))


def _train_autoencoders(method: str):
    def train(stage, plan, kind, out, folds_csv, stores, train_vols, seed, device, threads, models) -> list[str]:
        from .config import load_config
        from .methods.dpa.config import DPATrainConfig
        from .methods.dpa.train import train_dpa

        vgg = _simclr(stage, plan, kind, out, folds_csv, stores, seed, device, threads) if method == "dpa" else None
        files = []
        for a, store in stores.items():
            run_dir = out / "runs" / f"{method}_axis{a}"

            def go(a=a, store=store, run_dir=run_dir) -> str:
                over = _common_overrides(run_dir, seed, device, threads) + _stores_overrides([store], folds_csv)
                over += [f"model.size={plan.slice_size}", f"name={method}_axis{a}"]
                over += list(plan.overrides.get(method, ()))
                if vgg is not None:
                    over.append(f"loss.vgg={vgg}")
                cfg = load_config(DPATrainConfig, _config_path(plan, method, kind, a), over)
                return str(train_dpa(cfg, resume=_resume(run_dir)))

            files.append(stage(f"train {method} axis {a}", go))
        return files

    return train


def _train_segmenter(dim: int):
    def train(stage, plan, kind, out, folds_csv, stores, train_vols, seed, device, threads, models) -> list[str]:
        from .config import load_config
        from .methods.segmenter.config import SegmenterTrainConfig
        from .methods.segmenter.train import train_segmenter

        method = f"segmenter{dim}d"
        run_dir = out / "runs" / method

        def go() -> str:
            over = _common_overrides(run_dir, seed, device, threads)
            if dim == 2:
                over += _stores_overrides(list(stores.values()), folds_csv) + [f"model.size={plan.slice_size}"]
            else:
                over += [f"data.volumes={Path(train_vols[0]).parent}", f"data.folds={folds_csv}", "data.fold=0"]
            over += list(plan.overrides.get(method, ()))
            cfg = load_config(SegmenterTrainConfig, _config_path(plan, method, kind), over)
            return str(train_segmenter(cfg, resume=_resume(run_dir)))

        return [stage(f"train {method}", go)]

    return train


_TRAINERS: dict[str, Callable[..., list[str]]] = {
    "histogram": _train_histogram,
    "dpa": _train_autoencoders("dpa"),
    "l1": _train_autoencoders("l1"),
    "segmenter2d": _train_segmenter(2),
    "segmenter3d": _train_segmenter(3),
}


# ============================================================================ detectors and the report


def _build_detector(path: Path, members: dict[str, list[str]], normals: Sequence[Path], tuning: Path,
                    device: str | None, seed: int) -> Path:
    """One detector file over ``members`` (method -> model files), calibrated on ``normals``, tuned on ``tuning``."""
    from .inference.detector import fit_ensemble

    files = [f for fs in members.values() for f in fs]
    groups = [m for m, fs in members.items() for _ in fs]  # one member per method (the 2-D and 3-D segmenters apart)
    path.parent.mkdir(parents=True, exist_ok=True)  # model paths are stored relative to the detector's folder
    fit_ensemble(path, files, list(normals), val_dir=tuning, device=device, seed=seed, progress=False, groups=groups)
    return path


def _validation_report(out: Path, detectors: dict[str, str], final: Path | None, tuning: Path) -> Path:
    """Predict the tuning set with every detector, evaluate it, and write ``out/report/report.html``."""
    from .evaluation.evaluate import evaluate_folder
    from .evaluation.report import MethodResult, Report, write_report
    from .inference.detectors import load_detector
    from .inference.predict import predict_folder

    entries = dict(detectors)
    if final is not None and str(final) not in entries.values():
        entries["ensemble"] = str(final)
    results = []
    for name, det_path in entries.items():
        pred = out / "predictions" / "tuning" / name
        summary = predict_folder(load_detector(det_path), tuning / "toy", pred, "both", progress=False, on_error=None)
        if not summary.ok:
            raise MoodError(f"validation report: {name} failed on {len(summary.failed)} tuning cases")
        res = {task: evaluate_folder(pred, tuning / "toy_label", task, manifest=tuning / "manifest.csv", on_warning=None,
                                     progress=False) for task in ("pixel", "sample")}
        px, sm = res["pixel"], res["sample"]
        results.append(MethodResult(name, px, sm, px.histogram, sm.scores, sm.labels, ""))
    facts = {"set": "the TUNING set (validation fold with synthetic anomalies): it chose the calibration, the sample "
                    "rule and the member combine rule, so these numbers are optimistic; evaluate on held-out volumes"}
    return write_report(Report("mood-dpa fit: validation report", results, [], facts, {}), out / "report")
