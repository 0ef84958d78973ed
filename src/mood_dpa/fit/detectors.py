"""The detectors ``fit`` writes (one per method, one across methods) and its validation report."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.mood import TASKS
from ..errors import MoodError
from ..evaluation.evaluate import evaluate_folder
from ..evaluation.report import MethodResult, Report, write_report
from ..inference.loading import load_detector
from ..inference.predict import predict_folder
from ..inference.tuning import FLIP_CANDIDATES, fit_detector_file
from ..scoring.standardise import Standardiser


def build_detector(path: Path, members: dict[str, list[str]], normals: Sequence[Path], tuning: Path,
                   device: str | None, seed: int, flips: bool = False, standardiser: Standardiser | None = None) -> Path:
    """One detector file over ``members`` (recipe -> model files), calibrated on ``normals``, tuned on ``tuning``
    (with ``standardiser``: every volume's intensities standardised before the members score it)."""
    files = [f for fs in members.values() for f in fs]
    groups = [m for m, fs in members.items() for _ in fs]  # one member per recipe (the 2-D and 3-D segmenters apart)
    path.parent.mkdir(parents=True, exist_ok=True)  # model paths are stored relative to the detector's folder
    fit_detector_file(path, files, list(normals), groups=groups, device=device, val_dir=tuning, seed=seed, progress=False,
                      flip_candidates=FLIP_CANDIDATES if flips else None, standardiser=standardiser)
    return path


def validation_report(out: Path, detectors: dict[str, str], final: Path | None, tuning: Path) -> Path:
    """Predict the tuning set with every detector, evaluate it, and write ``out/report/report.html``."""
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
                                     progress=False) for task in TASKS}
        px, sm = res["pixel"], res["sample"]
        results.append(MethodResult(name, px, sm, px.histogram, sm.scores, sm.labels, ""))
    facts = {"set": "the TUNING set (validation fold with synthetic anomalies): it chose the calibration, the sample "
                    "rule and the member combine rule, so these numbers are optimistic; evaluate on held-out volumes"}
    return write_report(Report("mood-dpa fit: validation report", results, [], facts, {}), out / "report")
