"""The intensity-histogram baseline's model: the fitted intensity density, and its file.

Fit: the histogram of the foreground voxels (> ``threshold``) of the training volumes, smoothed
(Gaussian over bins, plus a floor) into a density ``p``. The raw map (:mod:`.scorer`) is
``log(p_max / p(x))`` per voxel, smoothed in space. Everything after the raw map (calibration into
[0, 1], background mask, sample rule) is the shared shell's, exactly as for every other method.

File (``.npz``, ``detector=histogram``, version 2): ``density``, ``threshold``, ``sigma`` and
``shell`` (JSON: the shell settings a LONE file carries for ``predict --model X.npz``: its
``calibration`` and ``sample_rule``; empty = uncalibrated). ``mood-dpa baseline fit`` fills them
(:func:`mood_dpa.inference.tuning.calibrate_model_file`); inside a detector file they are not read, the
detector's own calibration is. Version-1 files (with the old private ``knots_x`` / ``knots_y``
calibration) still load; their old calibration is ignored, so they score uncalibrated until refitted.

    fit_histogram(paths, "baseline.npz")     # the density only; then calibrate_model_file("baseline.npz", normals)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from ...atomic import atomic_path
from ...errors import MoodError
from ...progress import track
from ...volumes import read_volume

KIND = "histogram"
FORMAT_VERSION = 2


class HistogramModel:
    """Rarity of a voxel's intensity under the training intensity histogram (raw map only)."""

    name = "histogram"

    def __init__(self, density: np.ndarray, *, threshold: float = 0.0, sigma: float = 1.0,
                 shell: dict[str, Any] | None = None):
        self.density = np.asarray(density, np.float64)
        self.bins = self.density.size
        self.threshold = float(threshold)
        self.sigma = float(sigma)
        #: the shell's settings stored with the model (calibration, sample rule): see :func:`fit_histogram`
        self.shell: dict[str, Any] = dict(shell or {})
        self._neglog = np.log(self.density.max() / self.density)  # raw score per bin, >= 0

    def raw_scores(self, data: np.ndarray) -> np.ndarray:
        """Uncalibrated rarity map (float32, >= 0), smoothed in space; background (<= threshold) enters as 0."""
        data = np.asarray(data, np.float32)
        idx = np.clip((data * self.bins).astype(np.int64), 0, self.bins - 1)
        raw = self._neglog[idx].astype(np.float32)
        raw[data <= self.threshold] = 0.0
        if self.sigma > 0:
            raw = ndimage.gaussian_filter(raw, self.sigma, mode="constant")
        return raw

    @classmethod
    def fit(cls, volume_paths: Sequence[str | os.PathLike], *, bins: int = 256, threshold: float = 0.0, bin_sigma: float = 1.0,
            sigma: float = 1.0, progress: bool = True) -> "HistogramModel":
        """Fit the density on healthy volumes (paths); no calibration (see :func:`fit_histogram`)."""
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
        return cls(density / density.sum(), threshold=threshold, sigma=sigma)

    # ------------------------------------------------------------ file
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (``.npz``, ``detector=histogram``) atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh, detector=np.array(KIND), version=np.array(FORMAT_VERSION), density=self.density,
                    threshold=np.array(self.threshold), sigma=np.array(self.sigma), shell=np.array(json.dumps(self.shell)),
                )
        return path

    @classmethod
    def from_npz(cls, z, path: str | os.PathLike = "<model>") -> "HistogramModel":
        try:
            version = int(z["version"])
            if version > FORMAT_VERSION:
                raise MoodError(f"{path}: histogram model format {version} is newer than this mood-dpa understands")
            shell = json.loads(str(z["shell"])) if "shell" in z.files else {}
            return cls(z["density"], threshold=float(z["threshold"]), sigma=float(z["sigma"]), shell=shell)
        except KeyError as exc:
            raise MoodError(f"{path}: histogram model file lacks {exc.args[0]!r}") from None
        except ValueError:
            raise MoodError(f"{path}: histogram model file has an unreadable 'shell' entry") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HistogramModel":
        from ..registry import read_npz  # the registry imports this module lazily (its entry names it by string)

        with read_npz(path) as z:
            return cls.from_npz(z, path)


def fit_histogram(
    volume_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    bins: int = 256,
    threshold: float = 0.0,
    bin_sigma: float = 1.0,
    sigma: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Fit the density on healthy volumes and write ``out`` (.npz, no shell settings). ``seed`` is accepted
    for the recipe interface (the fit draws nothing at random)."""
    model = HistogramModel.fit(volume_paths, bins=bins, threshold=threshold, bin_sigma=bin_sigma, sigma=sigma, progress=progress)
    return model.save(out)


def read_shell_settings(path: str | os.PathLike) -> dict:
    """The shell settings a lone histogram file carries (the registry's ``settings``)."""
    return HistogramModel.load(path).shell


def write_shell_settings(path: str | os.PathLike, settings: dict) -> None:
    """Store shell settings (calibration, sample rule, background threshold, info) in a histogram file, atomically."""
    model = HistogramModel.load(path)
    model.shell = dict(settings)
    model.save(path)
