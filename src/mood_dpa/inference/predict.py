"""The ONE prediction writer every method uses (MOOD output layout).

For each ``*.nii.gz`` / ``*.nii`` in IN:

- pixel task: ``OUT/<same name>``, a float32 NIfTI with the input's shape, affine and header
  geometry, finite scores in [0, 1];
- sample task: ``OUT/<same name>.txt`` with one float in [0, 1] on the first line.

A detector that says where it comes from (``detector.source``: the detector YAML or model file, its
sha256 and what it was tuned on; :func:`mood_dpa.inference.loading.load_detector` sets it) is
recorded in ``OUT/.mood-dpa-predict.json`` (:mod:`mood_dpa.data.provenance`; ``evaluate`` reads it).

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
from typing import Callable, Sequence

import numpy as np

from ..atomic import write_text
from ..outputs import mark_output_dir
from ..errors import MoodError
from ..progress import track
from ..volumes import iter_volumes, list_volumes, write_volume
from ..ranks import global_rank
from ..runtime import adapt_threads
from .pipeline import BackgroundWriter, shard_paths
from ..data.provenance import earlier_outputs, write_predict_record

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


def _sample_value(detector, data: np.ndarray, scores: np.ndarray) -> float:
    value = float(detector.sample_score(data, scores))
    if not np.isfinite(value):
        raise MoodError("detector returned a NaN or infinite sample score")
    return min(max(value, 0.0), 1.0)


def predict_folder(
    detector,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    task: str,
    *,
    compresslevel: int = 1,
    progress: bool = True,
    on_error: Callable[[str], None] | None = _stderr,
    prefetch: int = 2,
    files: Sequence[Path] | None = None,
    record: bool = True,
    replace: bool = False,
) -> PredictSummary:
    """Run ``detector`` (any Detector) on every volume of ``in_dir`` and write MOOD-format outputs.

    ``task="both"`` writes the pixel and the sample output of each volume from one scoring pass
    (their names never collide, and the evaluator finds each by its label's name). Reading the
    next ``prefetch`` volumes and writing the previous outputs run in threads while the detector
    computes. Under ``torchrun`` (RANK / WORLD_SIZE set) each process takes its strided share of
    the inputs; ``files`` overrides the list. ``record=False`` writes no prediction record (the challenge
    container: OUT holds the outputs and nothing else). The record lists every output file: a rerun of the same
    detector removes the files of inputs that are gone, and a second detector into a used folder is refused
    unless ``replace`` (then the first one's outputs are removed).
    """
    if task not in (*TASKS, "both"):
        raise MoodError(f"--task {task!r}: expected pixel, sample or both")
    tasks = TASKS if task == "both" else (task,)
    if "pixel" in tasks and not getattr(detector, "voxel_map", True):
        raise MoodError(f"{getattr(detector, 'name', 'this detector')} gives one score per volume and no voxel map: "
                        "it cannot do the pixel task (use --task sample, or a detector with a map member)")
    every = list_volumes(in_dir) if files is None else [Path(f) for f in files]
    # under torchrun each rank scores its own share (RANK / WORLD_SIZE); alone, every file
    files = shard_paths(every) if files is None else every
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MoodError(f"{out_dir}: exists and is not a folder")
    source = getattr(detector, "source", None)
    names = [p.name for p in every]
    if record and isinstance(source, dict) and source and global_rank() == 0:
        stale = earlier_outputs(out_dir, source, tasks, names, replace) if out_dir.is_dir() else []
        mark_output_dir(out_dir)  # creates it with the marker of a mood-dpa output (mood_dpa.outputs)
        for old in stale:  # an earlier run's outputs for inputs that are gone (ours: the record lists them)
            old.unlink(missing_ok=True)
        # which detector writes these outputs and what it was tuned on (evaluate warns on its tuning set)
        write_predict_record(out_dir, source, tasks, in_dir, names)
    else:
        mark_output_dir(out_dir)
    summary = PredictSummary(task=task)
    start = time.perf_counter()

    def fail(name: str, exc: MoodError) -> None:
        summary.failed.append((name, str(exc)))
        if on_error is not None:
            on_error(f"skipped {name}: {exc}")

    def done(name: str):
        def record(result, error) -> None:
            if error is None:
                summary.written.append(result)
            else:
                fail(name, error)
        return record

    with BackgroundWriter(max_pending=2) as writer:
        items = iter_volumes(files, prefetch)
        for path, vol in track(items, f"predict {task}", total=len(files)) if progress else items:
            adapt_threads()  # keep to the cores no other process is using (mood_dpa.runtime.ThreadGovernor)
            try:
                if isinstance(vol, MoodError):
                    raise vol
                scores = _check_scores(detector.score_volume(vol.data), vol.data.shape)
                if "pixel" in tasks:
                    writer.submit(write_volume, out_dir / path.name, scores, vol.affine, vol.header, np.float32,
                                  compresslevel, done=done(path.name))
                if "sample" in tasks:
                    text = f"{_sample_value(detector, vol.data, scores)!r}\n"
                    writer.submit(write_text, out_dir / f"{path.name}.txt", text, done=done(path.name))
            except MoodError as exc:
                fail(path.name, exc)
    summary.seconds = time.perf_counter() - start
    return summary
