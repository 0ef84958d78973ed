"""The Detector protocol and the one loader of model files.

A detector turns a volume into voxel scores in [0, 1] and one sample score in [0, 1]. Any object with
these members works with :func:`mood_dpa.inference.predict.predict_folder`::

    class Detector(Protocol):
        name: str
        def score_volume(self, data: np.ndarray) -> np.ndarray: ...   # float32, same shape, finite, in [0,1]
        def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float: ...   # in [0,1]

:func:`load_detector` opens a model file: ``*.npz`` with ``detector=histogram`` (the baseline) or an
ensemble ``*.yaml`` / ``*.yml`` (DPA, through ``mood_dpa.inference.ensemble.load_ensemble``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import MoodError


@runtime_checkable
class Detector(Protocol):
    name: str

    def score_volume(self, data: np.ndarray) -> np.ndarray: ...

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float: ...


def _load_npz(path: Path):
    try:
        z = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise MoodError(f"{path}: not a readable .npz model file ({exc})") from None
    with z:
        if "detector" not in z.files:
            raise MoodError(f"{path}: .npz file without a 'detector' entry; not a mood-dpa model file")
        kind = str(z["detector"])
        if kind == "histogram":
            from ..baselines.histogram import HistogramDetector

            return HistogramDetector.from_npz(z, path)
    raise MoodError(f"{path}: unknown detector {kind!r} in model file (known: histogram)")


def load_detector(path: str | os.PathLike, device: str | None = None, batch_size: int | None = None) -> Detector:
    """Open a model file as a Detector.

    ``device`` (e.g. "cpu", "cuda", "cuda:1"; None = automatic) and ``batch_size`` (slices per forward
    pass; None = the file's own) are handed to ``load_ensemble`` for ensembles. The histogram
    baseline ignores both.
    """
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such model file")
    if batch_size is not None and batch_size < 1:
        raise MoodError("--batch-size must be at least 1")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        det = _load_npz(path)
    elif suffix in (".yaml", ".yml"):
        from .ensemble import load_ensemble  # written by the inference engineer; heavy (torch)

        if batch_size is None:
            return load_ensemble(path, device)
        return load_ensemble(path, device, batch_size=int(batch_size))
    else:
        raise MoodError(f"{path}: unknown model file type {path.suffix or '(none)'}; expected a baseline .npz or an ensemble .yaml")
    return det
