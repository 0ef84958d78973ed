"""``mood-dpa demo``: the whole pipeline on the embedded phantoms, ending in a report.

phantoms -> folds -> slices (3 axes) -> synthetic validation set -> histogram baseline ->
SimCLR VGG19 -> one DPA per axis (and a plain-L1 autoencoder per axis, the reference) ->
calibrated ensembles -> predict (pixel, sample) -> exact MOOD evaluation -> report.html.

Every step is seeded, so the same seed gives the same report numbers on the same machine.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable


from .errors import MoodError

CONFIG_DIR = Path(__file__).parent / "configs" / "demo"


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run (``quick`` is the CI smoke test, ``default`` the ~10-minute CPU run)."""

    volumes: int
    size: int
    n_folds: int
    slice_size: int
    simclr_steps: int
    dpa_steps: int
    val_every: int
    channels: int
    latent: int
    vgg_width: float
    layer: str
    batch_size: int
    kinds: tuple[str, ...] = ("ellipsoid", "uniform", "noise", "sink", "source", "shift", "reflect", "patch")
    figures_per_kind: int = 1


PRESETS = {
    "quick": DemoPlan(volumes=12, size=32, n_folds=4, slice_size=32, simclr_steps=10, dpa_steps=40, val_every=20,
                      channels=8, latent=16, vgg_width=0.125, layer="relu3_2", batch_size=32),
    "default": DemoPlan(volumes=40, size=64, n_folds=5, slice_size=64, simclr_steps=40, dpa_steps=150, val_every=50,
                        channels=16, latent=32, vgg_width=0.25, layer="relu3_2", batch_size=32),
}


@dataclass
class DemoOutcome:
    out: Path
    report: Path
    results: dict = field(default_factory=dict)  # method -> {"pixel": {...}, "sample": {...}}
    timings: dict = field(default_factory=dict)


class _Steps:
    """Times each step and prints one line per step."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.timings: dict[str, float] = {}
        self.n = 0

    def __call__(self, name: str, fn, *args, **kwargs):
        self.n += 1
        self.log(f"[{self.n}] {name} ...")
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[name] = time.perf_counter() - start
        self.log(f"[{self.n}] {name}: {self.timings[name]:.1f} s")
        return result


def _training_overrides(plan: DemoPlan, seed: int, stores: list[Path], folds: Path, run_dir: Path, device: str | None) -> list[str]:
    over = [
        f"run_dir={run_dir}",
        f"data.stores={json.dumps([str(s) for s in stores])}",
        f"data.folds={folds}",
        "data.fold=0",
        f"trainer.seed={seed}",
        "trainer.threads=null",  # the demo has the machine to itself: all cores
    ]
    if device:
        over.append(f"trainer.accelerator={device}")
    return over


def _pretrain(plan: DemoPlan, seed: int, stores, folds, run_dir: Path, device) -> Path:
    from .config import load_config
    from .training.config import SimCLRConfig
    from .training.runner import pretrain_simclr

    over = _training_overrides(plan, seed, stores, folds, run_dir, device) + [
        f"model.width={plan.vgg_width}",
        f"optim.max_steps={plan.simclr_steps}",
        f"augment.crop_size={min(plan.slice_size, 64)}",
    ]
    cfg = load_config(SimCLRConfig, CONFIG_DIR / "simclr.yaml", over)
    return pretrain_simclr(cfg)


def _train(plan: DemoPlan, seed: int, store: Path, folds, run_dir: Path, device, loss: str, vgg: Path | None) -> Path:
    from .config import load_config
    from .methods.dpa.config import DPATrainConfig
    from .methods.dpa.train import train_dpa

    over = _training_overrides(plan, seed, [store], folds, run_dir, device) + [
        f"model.channels={plan.channels}",
        f"model.latent={plan.latent}",
        f"model.size={plan.slice_size}",
        f"optim.max_steps={plan.dpa_steps}",
        f"optim.val_every={plan.val_every}",
        f"optim.batch_size={plan.batch_size}",
    ]
    if loss == "perceptual":
        over += [f"loss.layers=[{plan.layer}]", f"loss.vgg_width={plan.vgg_width}", f"loss.vgg={vgg}"]
    cfg = load_config(DPATrainConfig, CONFIG_DIR / ("dpa.yaml" if loss == "perceptual" else "l1.yaml"), over)
    return train_dpa(cfg)


def _evaluate(pred_root: Path, valset: Path, manifest: Path) -> dict:
    from .evaluation.evaluate import evaluate_folder

    return {task: evaluate_folder(pred_root, valset / "toy_label", task, manifest=manifest, on_warning=None, progress=False)
            for task in ("pixel", "sample")}


def _figures(valset: Path, manifest_rows: list[dict], pred_root: Path, fig_dir: Path, per_kind: int, method: str) -> list:
    from .evaluation.report import Figure
    from .viz import show_volume
    from .volumes import read_volume

    figures = []
    seen: dict[str, int] = {}
    for row in manifest_rows:
        kind = row["kind"]
        if kind == "normal" or seen.get(kind, 0) >= per_kind:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        name = row["case"] if row["case"].endswith(".nii.gz") else f"{row['case']}.nii.gz"
        vol = read_volume(valset / "toy" / name).data
        mask = read_volume(valset / "toy_label" / "pixel" / name).data
        scores = read_volume(pred_root / name).data
        png = show_volume(vol, fig_dir / f"{kind}_{seen[kind]}.png", mask=mask, scores=scores, title=f"{method}: {kind} ({name})",
                         log_scores=True)
        sample = (pred_root / f"{name}.txt").read_text().split()[0]
        figures.append(Figure(png, f"{method} voxel scores on a '{kind}' case ({name}), log colour scale; contour = true anomaly; sample score {float(sample):.3f}."))
    return figures


def run_demo(out: str | Path, preset: str = "default", seed: int = 0, device: str | None = None,
             log: Callable[[str], None] = print) -> DemoOutcome:
    """Run the whole pipeline into ``out`` and return where the report is and what it found."""
    from .data.folds import make_folds, paths_of_split, write_folds_csv
    from .data.phantoms import write_phantoms
    from .data.slices import SliceRule, build_store
    from .data.synth.layout import make_synthetic_set, read_manifest
    from .evaluation.report import MethodResult, Report, write_report
    from .inference.detector import fit_ensemble
    from .inference.detectors import load_detector
    from .inference.predict import predict_folder
    from .methods.histogram.model import fit_histogram

    if preset not in PRESETS:
        raise MoodError(f"unknown preset {preset!r} (choose {', '.join(PRESETS)})")
    plan = PRESETS[preset]
    out = _prepare_output(Path(out))
    step = _Steps(log)
    log(f"mood-dpa demo ({preset}): {plan.volumes} brain phantoms of {plan.size}^3, seed {seed}, output in {out}")

    vols = step("phantoms", write_phantoms, "brain", plan.volumes, plan.size, seed, out / "volumes")
    folds = make_folds([p.name for p in vols], plan.n_folds, seed)
    folds_csv = write_folds_csv(out / "folds.csv", folds)
    val_vols = paths_of_split(vols, folds_csv, 0, "val")
    train_vols = paths_of_split(vols, folds_csv, 0, "train")
    log(f"    folds: {len(train_vols)} training volumes, {len(val_vols)} validation volumes (fold 0)")

    stores = [step(f"slices axis {a}", build_store, out / "volumes", out / "slices" / f"axis_{a}", a, plan.slice_size, SliceRule())
              for a in range(3)]
    valset = out / "valset"
    step("synthetic anomalies", make_synthetic_set, val_vols, valset, list(plan.kinds), (1, 1), seed, progress=False)
    tuning = out / "tuning"
    step("tuning set", make_synthetic_set, val_vols, tuning, list(plan.kinds), (1, 1), seed + 1000,
         cases_per_volume=1, progress=False)
    manifest = valset / "manifest.csv"
    manifest_rows = read_manifest(manifest)

    # the baseline's raw map goes through the same shell as every method (calibrated on its training volumes)
    step("histogram baseline", fit_histogram, train_vols, out / "models" / "histogram.npz", seed=seed, progress=False)
    baseline = load_detector(out / "models" / "histogram.npz", device="cpu")

    vgg = step("SimCLR VGG19", _pretrain, plan, seed, [s.path for s in stores], folds_csv, out / "runs" / "simclr", device)
    ensembles = {}
    for method, loss, weights in [("DPA", "perceptual", vgg), ("L1-AE", "l1", None)]:
        files = [step(f"{method} axis {a}", _train, plan, seed, s.path, folds_csv, out / "runs" / f"{method.lower()}_axis{a}", device, loss, weights)
                 for a, s in enumerate(stores)]
        ensembles[method] = step(f"{method} calibration", fit_ensemble, out / "models" / f"{method.lower()}.yaml", files, val_vols,
                                 val_dir=tuning, device=device, seed=seed, progress=False)

    detectors = {"DPA": ensembles["DPA"], "Histogram baseline": baseline, "L1-AE": ensembles["L1-AE"]}
    notes = {
        "DPA": f"3 axis autoencoders (residual9, C={plan.channels}, d={plan.latent}, {plan.slice_size}x{plan.slice_size}) trained "
               f"with the relative perceptual L1 on {plan.layer} of a SimCLR-pretrained VGG19 (width x{plan.vgg_width}), {plan.dpa_steps} steps each.",
        "Histogram baseline": "non-learned: rarity of each voxel's intensity under the training intensity histogram, smoothed; "
                              "calibrated, background-masked and sample-scored by the shared shell.",
        "L1-AE": "the same autoencoders trained with a plain pixel L1 loss; score = |x - reconstruction|.",
    }
    methods = []
    figures = []
    for name, det in detectors.items():
        pred_root = out / "predictions" / name.split()[0].lower()
        summary = step(f"predict {name}", predict_folder, det, valset / "toy", pred_root, "both", progress=False, on_error=log)
        if not summary.ok:
            raise MoodError(f"demo: {name} failed on {len(summary.failed)} cases")
        res = _evaluate(pred_root, valset, manifest)
        px, sm = res["pixel"], res["sample"]
        methods.append(MethodResult(name, px, sm, px.histogram, sm.scores, sm.labels, notes[name]))
        if name in ("DPA", "Histogram baseline"):
            figures += _figures(valset, manifest_rows, pred_root, out / "figures" / name.split()[0].lower(), plan.figures_per_kind, name)

    results = {m.name: {"pixel": m.pixel.to_dict(), "sample": m.sample.to_dict()} for m in methods}
    facts = {
        "preset": preset, "seed": str(seed), "data": f"{plan.volumes} brain phantoms {plan.size}^3, {plan.n_folds} folds; fold 0 = validation",
        "validation set": f"{len(manifest_rows)} cases ({sum(r['kind'] == 'normal' for r in manifest_rows)} normal), kinds: {', '.join(plan.kinds)}",
        "metric": "MOOD rules: predictions read as float16, clipped to [0,1]; pooled voxel AP over all cases",
    }
    report = Report("mood-dpa demo report", methods, figures, facts, step.timings)
    path = write_report(report, out / "report")
    from .atomic import write_text

    write_text(out / "results.json", json.dumps({"plan": asdict(plan), "results": results, "timings": step.timings}, indent=1))
    return DemoOutcome(out, path, results, step.timings)


MARKER = ".mood-dpa-demo"
#: The folders a demo run makes; a re-run replaces them (and only them).
DEMO_FOLDERS = ("volumes", "slices", "valset", "tuning", "runs", "models", "predictions", "figures")


def _prepare_output(out: Path) -> Path:
    """Use ``out`` for a demo run: a new or empty folder, or one an earlier demo run made (its parts are replaced)."""
    import shutil

    if out.exists() and not out.is_dir():
        raise MoodError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise MoodError(f"{out}: folder is not empty and was not made by 'mood-dpa demo'; choose another -o")
    for name in DEMO_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by mood-dpa demo; a re-run replaces its folders\n")
    return out
