"""``mood-dpa demo``: the whole pipeline on the embedded phantoms, ending in a report.

phantoms (training subjects, and held-out test subjects) -> ``mood-dpa fit`` on the training subjects
(folds, slices, tuning set, the fit preset's methods: the 2-D segmenter and the voxel and volume histogram
baselines by default, also SimCLR + the DPA, the plain-L1 AE and the 3-D segmenter in ``quick`` and
``long``; calibrated detectors, a cross-method detector) -> synthetic anomalies (local and global kinds)
on the TEST subjects, and on the same subjects seen through a new scanner (``phantoms --style shifted``)
-> predict (pixel, sample) with every detector -> exact MOOD evaluation -> report.html.

Honest numbers: no model, calibration, sample rule or ensemble weight ever saw a test subject (they
are other phantom subjects), and the report marks, per method, the anomaly kinds whose family the
method synthesised in training ("seen"), with the pixel AP over the unseen kinds in the headline.
Every step is seeded, so the same seed gives the same report numbers on the same machine.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .atomic import write_text
from .data.mood import TASKS
from .data.phantoms import write_phantoms
from .data.synth.layout import ALL_KINDS, LOCAL_KINDS, make_synthetic_set, read_manifest
from .errors import MoodError
from .evaluation.evaluate import evaluate_folder
from .evaluation.report import Figure, MethodResult, Report, write_report
from .fit import PRESETS as FIT_PRESETS
from .fit import run_fit
from .inference.loading import load_detector, seen_kinds
from .inference.map_cache import raw_map_cache
from .inference.predict import predict_folder
from .methods.registry import recipes
from .viewer import Method, find_cases, report_section, write_viewer_files
from .viz import show_volume
from .volumes import read_volume

#: The name and note of the cross-method detector in the report (the others come from the registry's recipes).
ENSEMBLE = ("Ensemble", "the cross-method detector: calibrated maps of every voxel-map method (the segmenters, the "
                        "histogram baseline, the DPA where trained) combined by the rule chosen on the tuning set, "
                        "and the volume histogram's score joined at the sample level.")


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run (``quick`` is the CI smoke test, ``default`` the ~15-minute CPU run, ``long`` the
    same data with every model trained to early stopping: the converged numbers, hours on a CPU)."""

    train_volumes: int
    test_volumes: int
    size: int
    fit_preset: str
    kinds: tuple[str, ...] = tuple(ALL_KINDS)  # local kinds (the pixel task) and global ones (the sample task)
    figures_per_kind: int = 1
    shifted_style: str | None = "shifted"  # a second test set on a new scanner (None: none)


PRESETS = {
    "quick": DemoPlan(train_volumes=12, test_volumes=3, size=32, fit_preset="quick"),
    "default": DemoPlan(train_volumes=40, test_volumes=8, size=64, fit_preset="demo"),
    "long": DemoPlan(train_volumes=40, test_volumes=8, size=64, fit_preset="long"),
}


@dataclass
class DemoOutcome:
    out: Path
    report: Path
    results: dict = field(default_factory=dict)  # method -> {"pixel": {...}, "sample": {...}, "seen": [...]}
    timings: dict = field(default_factory=dict)


def headline(px, sm) -> dict:
    """The numbers the demo leads with: pixel metrics over the LOCAL kinds (a global kind's label is the whole
    changed foreground, which would swamp the pooled AP) and the sample ROC-AUC over each scope."""
    local = px.per_scope.get("local") or {"ap": px.ap, "best_dice": px.best_dice, "hit_rate": px.hit_rate,
                                          "positives": px.positives, "negatives": px.negatives}
    return {"pixel_ap": local["ap"], "best_dice": local.get("best_dice"), "hit_rate": local.get("hit_rate"),
            "pixel_chance": local["positives"] / max(local["positives"] + local["negatives"], 1),
            "sample_ap": sm.ap, "sample_auc": sm.roc_auc,
            "sample_auc_local": sm.per_scope.get("local", {}).get("roc_auc"),
            "sample_auc_global": sm.per_scope.get("global", {}).get("roc_auc"),
            "sample_chance": sm.positives / max(sm.cases, 1)}


def display_name(method: str) -> str:
    """The report's name of a detector fit wrote (its recipe's display name; ``ensemble``: the cross-method one)."""
    return ENSEMBLE[0] if method == "ensemble" else recipes()[method][1].display if method in recipes() else method


def _timed(timings: dict, log: Callable[[str], None], name: str, fn, *args, **kwargs):
    log(f"[{len(timings) + 1}] {name} ...")
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    timings[name] = time.perf_counter() - start
    log(f"[{len(timings)}] {name}: {timings[name]:.1f} s")
    return result


def _evaluate(pred_root: Path, valset: Path, manifest: Path, unseen: Sequence[str]) -> dict:
    return {task: evaluate_folder(pred_root, valset / "toy_label", task, manifest=manifest, on_warning=None,
                                  progress=False, groups={"unseen": list(unseen)})
            for task in TASKS}


def _figures(valset: Path, manifest_rows: list[dict], pred_root: Path, fig_dir: Path, per_kind: int, method: str) -> list:
    figures = []
    seen: dict[str, int] = {}
    for row in manifest_rows:
        kind = row["kind"]
        if kind not in LOCAL_KINDS or seen.get(kind, 0) >= per_kind:  # pictures of the local kinds (the pixel task)
            continue
        seen[kind] = seen.get(kind, 0) + 1
        name = row["file"]
        vol = read_volume(valset / "toy" / name).data
        mask = read_volume(valset / "toy_label" / "pixel" / name).data
        scores = read_volume(pred_root / name).data
        png = show_volume(vol, fig_dir / f"{kind}_{seen[kind]}.png", mask=mask, scores=scores,
                          title=f"{method}: {kind} ({name})", log_scores=True)
        sample = (pred_root / f"{name}.txt").read_text().split()[0]
        figures.append(Figure(png, f"{method} voxel scores on a '{kind}' case ({name}), log colour scale; "
                                   f"contour = true anomaly; sample score {float(sample):.3f}."))
    return figures


def run_demo(out: str | Path, preset: str = "default", seed: int = 0, device: str | None = None,
             log: Callable[[str], None] = print, threads: int | None = None, kind: str = "brain") -> DemoOutcome:
    """Run the whole pipeline into ``out`` and return where the report is and what it found. Every detector
    shares one raw-map memo (:mod:`mood_dpa.inference.map_cache`): the cross-method detector reuses the maps its
    members' own detectors computed for the same tuning and test volumes."""
    with raw_map_cache():
        return _run_demo(out, preset, seed, device, log, threads, kind)


def _run_demo(out: str | Path, preset: str, seed: int, device: str | None, log: Callable[[str], None],
              threads: int | None, kind: str) -> DemoOutcome:
    if preset not in PRESETS:
        raise MoodError(f"unknown preset {preset!r} (choose {', '.join(PRESETS)})")
    plan = PRESETS[preset]
    out = _prepare_output(Path(out))
    timings: dict[str, float] = {}
    log(f"mood-dpa demo ({preset}): {plan.train_volumes} training and {plan.test_volumes} held-out {kind} phantoms "
        f"of {plan.size}^3, seed {seed}, output in {out}")

    _timed(timings, log, "training phantoms", write_phantoms, kind, plan.train_volumes, plan.size, seed, out / "volumes")
    # held-out subjects: the indices after the training subjects' (other subjects, other file names)
    test_vols = _timed(timings, log, "test phantoms", write_phantoms, kind, plan.test_volumes, plan.size, seed,
                       out / "test_volumes", start=plan.train_volumes)
    start = time.perf_counter()
    fit = run_fit(out / "volumes", out / "fit", preset=plan.fit_preset, methods=None, kind=kind, seed=seed,
                  device=device, threads=threads, report=False, log=log)
    timings.update({f"fit: {k}": v for k, v in fit.timings.items()})
    log(f"fit: {time.perf_counter() - start:.1f} s")
    valset = out / "valset"
    _timed(timings, log, "synthetic anomalies (test subjects)", make_synthetic_set, test_vols, valset, list(plan.kinds),
           (1, 1), seed + 1, progress=False)
    manifest = valset / "manifest.csv"
    manifest_rows = read_manifest(manifest)

    detectors = {m: Path(p) for m, p in fit.detectors.items()}
    if fit.detector is not None and fit.detector not in detectors.values():
        detectors["ensemble"] = fit.detector
    browsed = [Method(display_name(m), out / "predictions" / m) for m in detectors]
    methods, results = _test(detectors, valset, out / "predictions", plan, timings, log, device, "")
    shifted_methods: list[MethodResult] = []
    if plan.shifted_style:
        # the same held-out subjects' indices seen through a scanner and population the training never saw
        shifted_vols = _timed(timings, log, "test phantoms, new scanner", write_phantoms, kind, plan.test_volumes, plan.size,
                              seed, out / "test_volumes_shifted", start=plan.train_volumes, style=plan.shifted_style)
        _timed(timings, log, "synthetic anomalies (new scanner)", make_synthetic_set, shifted_vols, out / "valset_shifted",
               list(plan.kinds), (1, 1), seed + 1, progress=False)
        shifted_methods, shifted = _test(detectors, out / "valset_shifted", out / "predictions_shifted", plan, timings,
                                         log, device, " (new scanner)")
        for name, res in shifted.items():
            results[name]["new_scanner"] = res
    figures = []
    best = sorted(methods, key=lambda m: -m.pixel.per_group["unseen"]["ap"])[:2]
    for m in best + [m for m in methods if m.name == "DPA" and m not in best]:
        key = next(k for k in detectors if display_name(k) == m.name)
        figures += _figures(valset, manifest_rows, out / "predictions" / key, out / "figures" / key,
                            plan.figures_per_kind, m.name)

    facts = {
        "preset": f"{preset} (fit preset {plan.fit_preset}: {FIT_PRESETS[plan.fit_preset].description})",
        "seed": str(seed),
        "training data": f"{plan.train_volumes} {kind} phantoms {plan.size}^3; fit's fold 0 = validation "
                         "(early stopping, calibration, tuning set)",
        "rules chosen on": _tuning_description(out / "fit"),
        "intensities": _standardise_description(out / "fit"),
        "test set": f"{len(manifest_rows)} cases ({sum(r['kind'] == 'normal' for r in manifest_rows)} normal) from "
                    f"{plan.test_volumes} held-out subjects no model or rule saw; kinds: {', '.join(plan.kinds)}",
        "metric": "MOOD rules: predictions read as float16, clipped to [0,1]; pooled voxel AP over all cases",
    }
    if plan.shifted_style:
        facts["new scanner"] = (f"the same held-out subjects' indices drawn with phantoms --style {plan.shifted_style} "
                                "(contrast, gamma, bias, noise, blur, anatomy scale, shape and pose outside every training "
                                "draw), the same kinds and seeds: how each detector transfers")
    report = Report("mood-dpa demo report", methods, figures, facts, timings, shifted=shifted_methods,
                    shifted_title=f"New scanner (phantoms --style {plan.shifted_style})")

    def case_browser(folder: Path) -> str:  # every test case, browsable, inside the report folder
        summary = write_viewer_files(folder / "viewer", find_cases(valset / "toy", valset, manifest), browsed,
                                     title="mood-dpa demo: the test cases", note=BROWSER_NOTE)
        return report_section(summary)

    path = _timed(timings, log, "report and case browser", write_report, report, out / "report", case_browser)
    write_text(out / "results.json", json.dumps({"plan": asdict(plan), "results": results, "timings": timings}, indent=1))
    return DemoOutcome(out, path, results, timings)


def _test(detectors: dict[str, Path], valset: Path, pred_dir: Path, plan: DemoPlan, timings: dict,
          log: Callable[[str], None], device: str | None, suffix: str) -> tuple[list[MethodResult], dict]:
    """Predict ``valset`` with every detector and evaluate it: the report's rows and results.json's entries."""
    manifest = valset / "manifest.csv"
    methods, results = [], {}
    for method, det_path in detectors.items():
        name = display_name(method)
        pred_root = pred_dir / method
        det = load_detector(det_path, device=device)
        summary = _timed(timings, log, f"predict {name}{suffix}", predict_folder, det, valset / "toy", pred_root, "both",
                         progress=False, on_error=log)
        if not summary.ok:
            raise MoodError(f"demo: {name} failed on {len(summary.failed)} cases{suffix}")
        seen = seen_kinds(det_path)
        # unseen: the LOCAL kinds of no family the method synthesised (global kinds are the sample task's)
        res = _evaluate(pred_root, valset, manifest, [k for k in plan.kinds if k in LOCAL_KINDS and k not in seen])
        px, sm = res["pixel"], res["sample"]
        methods.append(MethodResult(name, px, sm, px.histogram, sm.scores, sm.labels, _note(method),
                                    seen_kinds=frozenset(seen)))
        results[name] = {"pixel": px.to_dict(), "sample": sm.to_dict(), "seen": list(seen),
                         "unseen_pixel_ap": px.per_group["unseen"]["ap"], "headline": headline(px, sm)}
    return methods, results


def _tuning_description(fit_dir: Path) -> str:
    """What fit chose the rules on (its state file's ``tuning`` option), for the report's facts."""
    tuning = json.loads((fit_dir / "fit_state.json").read_text()).get("options", {}).get("tuning", "families")
    if tuning == "families":
        return ("a tuning set of the validation fold's volumes with anomalies of the segmenter's TRAINING families "
                "(no evaluation kind took part in any choice)")
    return f"a tuning set of the evaluation kinds {tuning} (fit --tuning-kinds): the unseen-kind numbers are optimistic"


def _standardise_description(fit_dir: Path) -> str:
    """Whether fit's detectors standardise each volume's intensities (its state file's option), for the facts."""
    if json.loads((fit_dir / "fit_state.json").read_text()).get("options", {}).get("standardise"):
        return ("each volume's foreground mapped onto the training volumes' percentile landmarks before the voxel-map "
                "members score it (fit --standardise; the volume histogram sees the volume as it is)")
    return "as they are (fit --no-standardise)"


def _note(method: str) -> str:
    return ENSEMBLE[1] if method == "ensemble" else recipes()[method][1].note if method in recipes() else ""


BROWSER_NOTE = ("Held-out test cases, never trained or tuned on. Scores are calibrated: 0.5 is about the highest "
                "score of a normal validation voxel, and each halving below it about doubles the share of normal "
                "voxels above.")

MARKER = ".mood-dpa-demo"
#: The folders a demo run makes; a re-run replaces them (and only them).
DEMO_FOLDERS = ("volumes", "test_volumes", "fit", "valset", "predictions", "figures",
                "test_volumes_shifted", "valset_shifted", "predictions_shifted",
                # folders of earlier versions of the demo
                "slices", "tuning", "runs", "models")


def _prepare_output(out: Path) -> Path:
    """Use ``out`` for a demo run: a new or empty folder, or one an earlier demo run made (its parts are replaced)."""
    if out.exists() and not out.is_dir():
        raise MoodError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise MoodError(f"{out}: folder is not empty and was not made by 'mood-dpa demo'; choose another -o")
    for name in DEMO_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by mood-dpa demo; a re-run replaces its folders\n")
    return out
