"""Per-volume intensity standardisation: each volume's foreground histogram mapped onto the training volumes'
(piecewise-linear between percentile landmarks, Nyul and Udupa 1999).

Why: a new scanner or protocol changes contrast and gamma globally; a detector that learned one scanner's
intensities then fires everywhere. Mapping every volume's foreground percentiles (1, 5, 10, 20, ..., 90,
95, 99) onto the mean landmarks of the training volumes undoes a global monotone change of intensity
before any model sees the volume, whatever the method. It cannot undo a bias field, noise or blur (the
appearance augmentation of :mod:`mood_dpa.training.appearance` is for those). Values beyond the outer
landmarks continue the outer segments' slopes (a bright lesion above the 99th percentile stays brighter
than its surroundings, not clipped to one value); the background (exactly 0) stays 0 and the foreground
stays in (0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import MoodError

#: The percentiles of the foreground that serve as landmarks.
PERCENTILES: tuple[float, ...] = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99)
#: A foreground voxel never maps to 0 (the background).
FLOOR = 1e-3


def landmarks(data: np.ndarray, percentiles: Iterable[float] = PERCENTILES) -> np.ndarray:
    """The foreground (> 0) percentiles of one volume, float64; MoodError for a volume without foreground."""
    fg = np.asarray(data)[np.asarray(data) > 0]
    if fg.size == 0:
        raise MoodError("intensity standardisation: the volume has no foreground (no voxel > 0)")
    return np.percentile(fg.astype(np.float64), list(percentiles))


@dataclass(frozen=True)
class Standardiser:
    """Maps a volume's foreground landmarks onto ``landmarks`` (the training volumes' mean)."""

    percentiles: tuple[float, ...] = PERCENTILES
    landmarks: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        p, m = np.asarray(self.percentiles, float), np.asarray(self.landmarks, float)
        if len(p) < 2 or len(p) != len(m) or np.any(np.diff(p) <= 0) or np.any(np.diff(m) <= 0):
            raise MoodError("intensity standardisation: percentiles and landmarks need equal lengths (>= 2), both increasing")
        if p[0] <= 0 or p[-1] >= 100 or m[0] < 0 or m[-1] > 1:
            raise MoodError("intensity standardisation: percentiles inside (0, 100), landmarks inside [0, 1]")

    @classmethod
    def fit(cls, volumes: Iterable[np.ndarray], percentiles: Iterable[float] = PERCENTILES) -> "Standardiser":
        """The mean landmarks of ``volumes`` (e.g. the training normals), made strictly increasing."""
        marks = [landmarks(v, percentiles) for v in volumes]
        if not marks:
            raise MoodError("intensity standardisation: no volumes to fit the landmarks on")
        mean = np.maximum.accumulate(np.mean(marks, axis=0))
        mean = mean + np.arange(len(mean)) * 1e-6  # ties (a flat histogram stretch) -> strictly increasing
        return cls(tuple(float(p) for p in percentiles), tuple(float(v) for v in np.clip(mean, 0.0, 1.0)))

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``data`` with its foreground mapped onto the standard landmarks (float32, same shape)."""
        x = np.asarray(data, np.float32)
        fg = x > 0
        if not fg.any():
            return x.copy()
        src = landmarks(x, self.percentiles)
        src = src + np.arange(len(src)) * 1e-9  # a volume with tied landmarks still maps monotonically
        dst = np.asarray(self.landmarks, np.float64)
        v = x[fg].astype(np.float64)
        y = np.interp(v, src, dst)
        low = (dst[1] - dst[0]) / max(src[1] - src[0], 1e-9)
        high = (dst[-1] - dst[-2]) / max(src[-1] - src[-2], 1e-9)
        y = np.where(v < src[0], dst[0] + (v - src[0]) * low, y)
        y = np.where(v > src[-1], dst[-1] + (v - src[-1]) * high, y)
        out = np.zeros(x.shape, np.float32)
        out[fg] = np.clip(y, FLOOR, 1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"percentiles": list(self.percentiles), "landmarks": list(self.landmarks)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Standardiser":
        try:
            return cls(tuple(float(v) for v in d.get("percentiles", PERCENTILES)), tuple(float(v) for v in d["landmarks"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MoodError(f"intensity standardisation: {type(exc).__name__}: {exc}") from None
