"""The ONE prediction writer every method uses (MOOD output layout).

For each ``*.nii.gz`` / ``*.nii`` in IN:

- pixel task: ``OUT/<same name>``, a float32 NIfTI with the input's shape, affine and header
  geometry, finite scores in [0, 1];
- sample task: ``OUT/<same name>.txt`` with one float in [0, 1] on the first line.

Writes are atomic. A bad input (unreadable, NaN, 4-D ...) or a detector failure on one file is
reported in one line and skipped; the others are still written. The caller decides the exit code
from ``summary.failed`` (the CLI exits 2).

    summary = predict_folder(load_detector("baseline.npz"), "IN", "OUT", "pixel")
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import write_text
from ..errors import MoodError
from ..progress import track
from ..volumes import list_volumes, read_volume, write_volume

TASKS = ("pixel", "sample")


@dataclass
class PredictSummary:
    task: str
    written: list = field(default_factory=list)  # output paths
    failed: list = field(default_factory=list)  # (input name, reason)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        s = f"{self.task}: wrote {len(self.written)} predictions in {self.seconds:.1f} s"
        return s + (f"; {len(self.failed)} input(s) failed" if self.failed else "")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _check_scores(scores, shape) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float32)
    if arr.shape != tuple(shape):
        raise MoodError(f"detector returned shape {arr.shape}, expected {tuple(shape)}")
    if not np.isfinite(arr).all():
        raise MoodError("detector returned NaN or infinite scores")
    return np.clip(arr, 0.0, 1.0)


def predict_folder(
    detector,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    task: str,
    *,
    compresslevel: int = 1,
    progress: bool = True,
    on_error: Callable[[str], None] | None = _stderr,
) -> PredictSummary:
    """Run ``detector`` (any Detector) on every volume of ``in_dir`` and write MOOD-format outputs."""
    if task not in TASKS:
        raise MoodError(f"--task {task!r}: expected pixel or sample")
    files = list_volumes(in_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MoodError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = PredictSummary(task=task)
    start = time.perf_counter()
    for path in track(files, f"predict {task}") if progress else files:
        try:
            vol = read_volume(path)
            scores = _check_scores(detector.score_volume(vol.data), vol.data.shape)
            if task == "pixel":
                out = write_volume(out_dir / path.name, scores, vol.affine, vol.header, np.float32, compresslevel)
            else:
                value = float(detector.sample_score(vol.data, scores))
                if not np.isfinite(value):
                    raise MoodError("detector returned a NaN or infinite sample score")
                out = write_text(out_dir / f"{path.name}.txt", f"{min(max(value, 0.0), 1.0)!r}\n")
            summary.written.append(out)
        except MoodError as exc:
            summary.failed.append((path.name, str(exc)))
            if on_error is not None:
                on_error(f"skipped {path.name}: {exc}")
    summary.seconds = time.perf_counter() - start
    return summary
