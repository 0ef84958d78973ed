"""The intensity-histogram baseline: a voxel is abnormal when its intensity is rare.

Fit: the histogram of the foreground voxels (> ``threshold``) of the training volumes, smoothed
(Gaussian over bins, plus a floor) into a density ``p``. Voxel raw score: ``log(p_max / p(x))`` for
foreground voxels (0 for the most common intensity, larger for rarer ones, 0 for background),
then smoothed in space (Gaussian, ``sigma`` voxels). The raw score is mapped into [0, 1] by a monotone
piecewise-linear calibration fitted on (a sample of) the training volumes: training quantiles
50 / 99 / 99.9 / 99.99 % go to 0.2 / 0.4 / 0.5 / 0.6 and the largest possible raw score to 1, so
normal tissue stays low, anomalies spread over the upper range and float16 keeps them apart.
Sample score: the mean of the top ``top_fraction`` of voxel scores (at least ``min_top`` voxels).

    det = HistogramDetector.fit(paths, seed=0); det.save("baseline.npz")
    det = load_detector("baseline.npz"); det.score_volume(data); det.sample_score(data, scores)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..atomic import atomic_path
from ..errors import MoodError
from ..progress import track
from ..volumes import read_volume

CAL_QUANTILES = (0.5, 0.99, 0.999, 0.9999)
CAL_TARGETS = (0.2, 0.4, 0.5, 0.6)
FORMAT_VERSION = 1


class HistogramDetector:
    """Rarity of a voxel's intensity under the training intensity histogram (a Detector)."""

    name = "histogram"

    def __init__(
        self,
        density: np.ndarray,
        knots_x: np.ndarray,
        knots_y: np.ndarray,
        *,
        threshold: float = 0.0,
        sigma: float = 1.0,
        top_fraction: float = 0.001,
        min_top: int = 10,
    ):
        self.density = np.asarray(density, np.float64)
        self.bins = self.density.size
        self.knots_x = np.asarray(knots_x, np.float64)
        self.knots_y = np.asarray(knots_y, np.float64)
        self.threshold = float(threshold)
        self.sigma = float(sigma)
        self.top_fraction = float(top_fraction)
        self.min_top = int(min_top)
        self._neglog = np.log(self.density.max() / self.density)  # raw score per bin, >= 0

    # ------------------------------------------------------------ scoring
    def raw_scores(self, data: np.ndarray) -> np.ndarray:
        """Uncalibrated rarity map (float32, >= 0), smoothed in space."""
        data = np.asarray(data, np.float32)
        idx = np.clip((data * self.bins).astype(np.int64), 0, self.bins - 1)
        raw = self._neglog[idx].astype(np.float32)
        raw[data <= self.threshold] = 0.0
        if self.sigma > 0:
            raw = ndimage.gaussian_filter(raw, self.sigma, mode="constant")
        return raw

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self.knots_x, self.knots_y).astype(np.float32)

    def score_volume(self, data: np.ndarray) -> np.ndarray:
        """Voxel scores: float32, same shape, in [0, 1]."""
        return np.clip(self.calibrate(self.raw_scores(data)), 0.0, 1.0)

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float:
        """Mean of the highest ``top_fraction`` voxel scores of the foreground (in [0, 1])."""
        flat = np.asarray(voxel_scores, np.float32).reshape(-1)
        fg = int(np.count_nonzero(np.asarray(data) > self.threshold))
        k = int(min(flat.size, max(self.min_top, round(self.top_fraction * max(fg, 1)))))
        top = np.partition(flat, flat.size - k)[flat.size - k :]
        return float(np.clip(top.mean(dtype=np.float64), 0.0, 1.0))

    # ------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        volume_paths: Sequence[str | os.PathLike],
        *,
        bins: int = 256,
        threshold: float = 0.0,
        bin_sigma: float = 1.0,
        sigma: float = 1.0,
        top_fraction: float = 0.001,
        calibration_volumes: int = 16,
        calibration_voxels: int = 2_000_000,
        seed: int = 0,
        progress: bool = True,
    ) -> "HistogramDetector":
        """Fit on healthy volumes (paths). Calibration uses up to ``calibration_volumes`` of them (seeded)."""
        paths = [Path(p) for p in volume_paths]
        if not paths:
            raise MoodError("no training volumes given to fit the histogram baseline")
        if bins < 8:
            raise MoodError("--bins must be at least 8")
        counts = np.zeros(bins, np.float64)
        for p in track(paths, "histogram") if progress else paths:
            data = read_volume(p).data
            fg = data[data > threshold]
            counts += np.bincount(np.clip((fg * bins).astype(np.int64), 0, bins - 1), minlength=bins)
        if counts.sum() == 0:
            raise MoodError("the training volumes have no foreground voxels (all <= threshold)")
        density = ndimage.gaussian_filter1d(counts, bin_sigma, mode="constant") if bin_sigma > 0 else counts.copy()
        density = density / density.sum()
        # Floor: an intensity never seen is rare, but not infinitely so.
        density = np.maximum(density, 0.01 / counts.sum())
        density = density / density.sum()
        det = cls(density, np.array([0.0, 1.0]), np.array([0.0, 1.0]), threshold=threshold, sigma=sigma, top_fraction=top_fraction)

        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(len(paths), size=min(calibration_volumes, len(paths)), replace=False).tolist())
        per_volume = max(1, calibration_voxels // len(chosen))
        samples = []
        for i in track(chosen, "calibration") if progress else chosen:
            data = read_volume(paths[i]).data
            raw = det.raw_scores(data)[data > threshold]
            if raw.size > per_volume:
                raw = rng.choice(raw, size=per_volume, replace=False)
            samples.append(raw)
        raw_all = np.concatenate(samples) if samples else np.zeros(1)
        det.knots_x, det.knots_y = _calibration_knots(raw_all, float(det._neglog.max()))
        return det

    # ------------------------------------------------------------ file
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (``.npz``, ``detector=histogram``) atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh, detector=np.array("histogram"), version=np.array(FORMAT_VERSION), density=self.density,
                    knots_x=self.knots_x, knots_y=self.knots_y, threshold=np.array(self.threshold),
                    sigma=np.array(self.sigma), top_fraction=np.array(self.top_fraction), min_top=np.array(self.min_top),
                )
        return path

    @classmethod
    def from_npz(cls, z, path: str | os.PathLike = "<model>") -> "HistogramDetector":
        try:
            version = int(z["version"])
            if version > FORMAT_VERSION:
                raise MoodError(f"{path}: histogram model format {version} is newer than this mood-dpa understands")
            return cls(
                z["density"], z["knots_x"], z["knots_y"], threshold=float(z["threshold"]), sigma=float(z["sigma"]),
                top_fraction=float(z["top_fraction"]), min_top=int(z["min_top"]),
            )
        except KeyError as exc:
            raise MoodError(f"{path}: histogram model file lacks {exc.args[0]!r}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HistogramDetector":
        with np.load(path, allow_pickle=False) as z:
            return cls.from_npz(z, path)


def _calibration_knots(raw: np.ndarray, raw_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Monotone knots: 0 -> 0, training quantiles -> CAL_TARGETS, the largest possible raw score -> 1."""
    qs = np.quantile(raw, CAL_QUANTILES) if raw.size else np.zeros(len(CAL_QUANTILES))
    xs = [0.0, *qs.tolist(), max(raw_max, float(raw.max(initial=0.0)))]
    ys = [0.0, *CAL_TARGETS, 1.0]
    # strictly increasing x (ties from piled-up training scores are nudged apart)
    out_x = [xs[0]]
    for x in xs[1:]:
        out_x.append(max(x, out_x[-1] + 1e-6))
    return np.asarray(out_x), np.asarray(ys)
