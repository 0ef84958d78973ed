"""The Detector protocol and the one loader of model files.

A detector turns a volume into voxel scores in [0, 1] and one sample score in [0, 1]. Any object with
these members works with :func:`mood_dpa.inference.predict.predict_folder`::

    class Detector(Protocol):
        name: str
        def score_volume(self, data: np.ndarray) -> np.ndarray: ...   # float32, same shape, finite, in [0,1]
        def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float: ...   # in [0,1]

:func:`load_detector` opens a model file: a lone ``*.npz`` model of any registered method (e.g.
``detector=histogram``, scored through the shared shell with the calibration it carries) or a
detector ``*.yaml`` / ``*.yml`` (any members, through ``mood_dpa.inference.detector.load_ensemble``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import MoodError


@runtime_checkable
class Detector(Protocol):
    name: str

    def score_volume(self, data: np.ndarray) -> np.ndarray: ...

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float: ...


def load_detector(path: str | os.PathLike, device: str | None = None, batch_size: int | None = None) -> Detector:
    """Open a model file as a Detector.

    ``device`` (e.g. "cpu", "cuda", "cuda:1"; None = automatic) and ``batch_size`` (slices per forward
    pass; None = the file's own) go to the shell (a histogram model computes on the CPU whatever
    the device).
    """
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such model file")
    if batch_size is not None and batch_size < 1:
        raise MoodError("--batch-size must be at least 1")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from .detector import single_file_detector

        return single_file_detector(path, device, batch_size)
    if suffix in (".yaml", ".yml"):
        from .detector import load_ensemble  # heavy (torch)

        if batch_size is None:
            return load_ensemble(path, device)
        return load_ensemble(path, device, batch_size=int(batch_size))
    raise MoodError(f"{path}: unknown model file type {path.suffix or '(none)'}; expected a baseline .npz or an ensemble .yaml")
