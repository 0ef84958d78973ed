"""A volume-level intensity-histogram detector: how far is this volume's intensity profile from the training volumes'?

Why: the MOOD sample task asks "is anything wrong with this volume?". Whole-volume changes (contrast or
gamma, noise, blur, a bias field, ghosting, another modality's profile, a rescaled volume) move the
volume's intensity distribution while leaving no single voxel rare, so voxel detectors pooled by
max / top-k miss them. Comparing whole-volume histograms is the non-learned idea that placed second in
a MOOD sample-level task. It says nothing about WHERE: this is a sample-level detector only, and its
voxel map is all zeros (honestly uninformative; a volume score painted on the foreground would flood the
pooled pixel AP with every voxel of every abnormal-looking volume).

Features of a volume (:func:`volume_features`):

* the normalised histogram of its foreground intensities (foreground = voxels > ``threshold``, 0 by
  default: the MOOD background is exactly 0), ``bins`` fixed bins over [0, 1] (values above 1 fall in the
  last bin). Fixed bins, not per-volume ones, because a global change of scale IS the anomaly here;
* two robust statistics the histogram cannot carry (:data:`STAT_NAMES`):
  - its foreground fraction (share of voxels > ``threshold``): it sees a rescaled (zoomed) volume,
    background ghosting or noise lifting the background above 0, and a blank volume;
  - the log of its noise floor (:func:`noise_floor`): noise and blur only convolve the histogram with a
    narrow kernel, which W1 hardly sees next to the healthy subject-to-subject shifts of the tissue
    peaks (measured on 32^3-64^3 phantoms: noise sigma 0.05 at chance with the histogram alone).
  Percentiles are NOT added: they are points of the quantile function, whose L1 distance is already
  exactly the Wasserstein distance below.

Parts of the distance between two volumes (:func:`part_distances`), each unit-free::

    d_W(a, b) = W1(h_a, h_b) / s_W,   d_F(a, b) = |f_a - f_b| / s_F,   d_N(a, b) = |log n_a - log n_b| / s_N

``W1`` is the 1-D Wasserstein (earth mover's) distance between the two histograms on the bin centres,
which for equal-width bins is the L1 distance between their CDFs times the bin width
(:func:`wasserstein_matrix`). Why W1 rather than chi-square: chi-square compares bin with bin, so it is
blind to the intensity axis: moving mass to the neighbouring bin (the ordinary contrast jitter between
healthy subjects) costs as much as moving it across the whole range, and it is unstable on empty bins
and depends on the bin width. W1 grows with how FAR mass moved, so small subject-to-subject shifts cost
little while a gamma change, an inversion or another modality's profile cost a lot; it is in intensity
units and hardly depends on the number of bins. ``s_W``, ``s_F``, ``s_N`` are the medians of each
component over all pairs of training volumes, so the parts are unit-free (a statistic whose weight
is 0 is left out: weights 0 and 0 give the histogram alone).

How the parts combine (``combination``, :func:`combined_knn`):

* ``max`` (the default): each part's kNN distance (mean of the k smallest) divided by that part's
  leave-one-out NORMAL MAXIMUM over the training volumes (times its weight, W1's is 1), and the maximum
  over the parts. Why: a volume is abnormal when ANY part is further than every training volume was in
  that part; a held-out normal that is unusual in one part stays at about 1 there, while a changed
  volume goes far above 1 in the part it changed. Each part is on its own normal scale, so one part's
  heavy healthy spread (the noise floor's 2.5x between subjects) does not drown another's signal.
* ``sum`` (format-1 files, and for comparison): the kNN mean of the sum of the median-scaled parts
  ``d = d_W + w_F d_F + w_N d_N``, so the parts count equally at their TYPICAL healthy spread.

Measured trade-off (``benchmarks/bench_volume_histogram.py``, 64^3 brain phantoms, fit on 32, 8 held-out;
the table is in BENCHMARKS.md): the histogram alone is perfect (ROC-AUC 1.0) on gamma, contrast,
intensity shift, inversion, blur, ghosting and zoom but at chance on noise; with the two statistics
SUMMED noise improves while the histogram-visible kinds drop, because the phantoms' healthy noise level
varies 2.5x between subjects and the sum lets a held-out normal that is unusual in one statistic
outscore a changed volume. The MAX combination keeps both (the default). None sees a bias field or a
translated volume, nor small local changes.

Score of a new volume: the mean distance (per part, for ``max``) to its ``k`` nearest training volumes (k = 5 by default, at most
N - 1). kNN rather than the distance to a mean histogram, because a healthy population is not one blob
(sexes, ages, scanners): the nearest neighbours are the volumes that look most like this one; the mean of
k rather than the single nearest keeps one odd training volume from vouching for an anomaly.

Reference and calibration: the leave-one-out score of every training volume (its mean distance to its
k nearest OTHER training volumes; the same k as at test time, so the two are comparable) is the normal
distribution of scores. :func:`mood_dpa.inference.calibration.fit_calibration` maps it monotonically into
[0, 0.5] (quantile knots) with a log tail above the normal maximum into (0.5, 1): the volume score is
finite, in [0, 1], increasing in the distance, and above 0.5 exactly when the volume is further from
the training set than every training volume was. A volume with no foreground has no histogram; it is
scored 1 (a blank scan is not a healthy one).

The fit is deterministic (there is nothing random in it); ``seed`` is recorded in the file so every
method's ``fit`` takes the same arguments.

    det = VolumeHistogramDetector.fit(paths); det.save("volhist.npz")
    det = VolumeHistogramDetector.load("volhist.npz"); det.volume_score(data)
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ...atomic import atomic_path
from ...errors import MoodError
from ...progress import track
from ...scoring.calibration import Calibration, fit_calibration
from ...volumes import read_volume, volume_id
from .features import (
    DEFAULT_BINS,
    STAT_NAMES,
    VolumeFeatures,
    _pair_scale,
    combined_knn,
    knn_mean,
    leave_one_out_knn,
    pair_distances,
    part_distances,
    part_weights,
    volume_features,
    wasserstein_matrix,
)

DETECTOR_KIND = "volume-histogram"
#: 2: ``combination`` and ``part_max`` (the max combination); a version-1 file is read as ``sum``.
FORMAT_VERSION = 2
DEFAULT_K = 5
MIN_TRAINING_VOLUMES = 3
#: The scalar statistics beside the histogram (module docstring), in the order of the stored arrays.
#: How the distance parts combine (module docstring); the first is the default.
COMBINATIONS = ("max", "sum")
DEFAULT_COMBINATION = "max"
_REQUIRED_KEYS = ("version", "histograms", "stats", "bins", "k", "threshold", "weights", "scales", "calibration")


# ============================================================================================ detector
class VolumeHistogramDetector:
    """Distance of a volume's intensity histogram to its nearest training volumes (a sample-level Detector)."""

    name = DETECTOR_KIND

    def __init__(
        self,
        histograms: np.ndarray,
        stats: np.ndarray,
        *,
        k: int,
        threshold: float,
        weights: Sequence[float],
        scales: Sequence[float],
        calibration: Calibration,
        reference: np.ndarray | None = None,
        names: Sequence[str] = (),
        seed: int = 0,
        combination: str = "sum",
        part_max: Sequence[float] | None = None,
    ):
        self.histograms = np.asarray(histograms, np.float64)
        self.stats = np.asarray(stats, np.float64)
        n_stats = len(STAT_NAMES)
        if self.histograms.ndim != 2 or self.stats.shape != (self.histograms.shape[0], n_stats):
            raise MoodError(f"volume-histogram: histograms must be (N, bins) and stats (N, {n_stats}), got {self.histograms.shape} and {self.stats.shape}")
        n = self.histograms.shape[0]
        if n < MIN_TRAINING_VOLUMES:
            raise MoodError(f"volume-histogram: needs at least {MIN_TRAINING_VOLUMES} training volumes, got {n}")
        if not 1 <= int(k) <= n - 1:
            raise MoodError(f"volume-histogram: k must be from 1 to N - 1 = {n - 1}, got {k}")
        if not (np.isfinite(self.histograms).all() and np.isfinite(self.stats).all()):
            raise MoodError("volume-histogram: histograms and statistics must be finite")
        self.bins = self.histograms.shape[1]
        self.k = int(k)
        self.threshold = float(threshold)
        self.weights = tuple(float(w) for w in weights)
        if len(self.weights) != n_stats or not all(np.isfinite(w) and w >= 0 for w in self.weights):
            raise MoodError(f"volume-histogram: weights must be {n_stats} numbers >= 0, got {weights}")
        self.scales = tuple(float(s) for s in scales)
        if len(self.scales) != 1 + n_stats or not all(np.isfinite(s) and s > 0 for s in self.scales):
            raise MoodError(f"volume-histogram: scales must be {1 + n_stats} positive numbers, got {scales}")
        if combination not in COMBINATIONS:
            raise MoodError(f"volume-histogram: combination must be one of {', '.join(COMBINATIONS)}, got {combination!r}")
        self.combination = combination
        n_parts = len(part_weights(self.weights))
        if combination == "max":
            pm = tuple(float(m) for m in (part_max if part_max is not None else ()))
            if len(pm) != n_parts or not all(np.isfinite(m) and m > 0 for m in pm):
                raise MoodError(f"volume-histogram: part_max must be {n_parts} positive numbers, got {part_max}")
            self.part_max: tuple[float, ...] | None = pm
        else:
            self.part_max = None
        self.calibration = calibration
        self.reference = None if reference is None else np.asarray(reference, np.float64)
        self.names = tuple(str(s) for s in names)
        self.seed = int(seed)

    # ------------------------------------------------------------------------------------ fitting
    @classmethod
    def from_features(
        cls,
        features: Sequence[VolumeFeatures],
        *,
        k: int = DEFAULT_K,
        threshold: float = 0.0,
        fraction_weight: float = 1.0,
        noise_weight: float = 1.0,
        names: Sequence[str] = (),
        seed: int = 0,
        combination: str = DEFAULT_COMBINATION,
    ) -> "VolumeHistogramDetector":
        """Fit from the features of healthy volumes: scales, leave-one-out reference (and, for ``max``,
        each part's leave-one-out maximum), calibration."""
        n = len(features)
        if n < MIN_TRAINING_VOLUMES:
            raise MoodError(f"volume-histogram: needs at least {MIN_TRAINING_VOLUMES} training volumes, got {n}")
        for i, f in enumerate(features):
            if f.empty:
                label = names[i] if i < len(names) else f"#{i}"
                raise MoodError(f"volume-histogram: training volume {label} has no foreground voxels (all <= threshold)")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MoodError(f"volume-histogram: k must be an integer >= 1, got {k!r}")
        k_eff = min(int(k), n - 1)  # the same k for the leave-one-out reference and for new volumes
        hists = np.stack([f.histogram for f in features])
        stats = np.stack([f.stats for f in features])
        scales = [_pair_scale(wasserstein_matrix(hists, hists), 1.0 / hists.shape[1])]
        for j in range(stats.shape[1]):
            scales.append(_pair_scale(np.abs(stats[:, j, None] - stats[None, :, j]), 1e-3))
        weights = (float(fraction_weight), float(noise_weight))
        if not all(np.isfinite(w) and w >= 0 for w in weights):
            raise MoodError(f"volume-histogram: fraction and noise weights must be >= 0, got {weights}")
        if combination not in COMBINATIONS:
            raise MoodError(f"volume-histogram: combination must be one of {', '.join(COMBINATIONS)}, got {combination!r}")
        part_max = None
        if combination == "max":
            loo = [leave_one_out_knn(d, k_eff) for d in part_distances(hists, stats, hists, stats, scales, weights)]
            # a part in which every training volume is its neighbours' twin: any positive unit will do
            part_max = [float(v.max()) if v.max() > 0 else 1.0 for v in loo]
            reference = combined_knn(loo, part_max, part_weights(weights))
        else:
            reference = leave_one_out_knn(pair_distances(hists, stats, hists, stats, scales, weights), k_eff)
        calibration = fit_calibration(reference)
        return cls(
            hists, stats, k=k_eff, threshold=threshold, weights=weights, scales=scales,
            calibration=calibration, reference=reference, names=names, seed=seed,
            combination=combination, part_max=part_max,
        )

    @classmethod
    def from_volumes(cls, volumes: Sequence[np.ndarray], *, bins: int = DEFAULT_BINS, threshold: float = 0.0, **kwargs) -> "VolumeHistogramDetector":
        """Fit on in-memory healthy volumes (see :meth:`from_features` for the keyword arguments)."""
        _check_bins(bins)
        return cls.from_features([volume_features(v, bins, threshold) for v in volumes], threshold=threshold, **kwargs)

    @classmethod
    def fit(
        cls,
        paths: Sequence[str | os.PathLike],
        *,
        bins: int = DEFAULT_BINS,
        k: int = DEFAULT_K,
        threshold: float = 0.0,
        fraction_weight: float = 1.0,
        noise_weight: float = 1.0,
        combination: str = DEFAULT_COMBINATION,
        seed: int = 0,
        progress: bool = True,
    ) -> "VolumeHistogramDetector":
        """Fit on healthy volume files (one pass, one volume in memory at a time)."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise MoodError("no training volumes given to fit the volume-histogram detector")
        _check_bins(bins)
        feats = [volume_features(read_volume(p).data, bins, threshold) for p in (track(paths, "volume histograms") if progress else paths)]
        return cls.from_features(
            feats, k=k, threshold=threshold, fraction_weight=fraction_weight, noise_weight=noise_weight,
            names=[volume_id(p) for p in paths], seed=seed, combination=combination,
        )

    # ------------------------------------------------------------------------------------ scoring
    def distance(self, data: np.ndarray) -> float:
        """Raw score: the combined kNN distance to the training volumes (+inf for a blank volume)."""
        f = volume_features(data, self.bins, self.threshold)
        if f.empty:
            return float("inf")
        if self.combination == "max":
            parts = part_distances(f.histogram[None], f.stats[None], self.histograms, self.stats, self.scales, self.weights)
            return float(combined_knn([knn_mean(d, self.k) for d in parts], self.part_max, part_weights(self.weights))[0])
        d = pair_distances(f.histogram[None], f.stats[None], self.histograms, self.stats, self.scales, self.weights)
        return float(knn_mean(d, self.k)[0])

    def volume_score(self, data: np.ndarray) -> float:
        """Calibrated sample score in [0, 1]: above 0.5 when further than every training volume was."""
        s = float(self.calibration.apply(self.distance(data)))
        return min(max(s, 0.0), 1.0)

    def score_volume(self, data: np.ndarray) -> np.ndarray:
        """All zeros (float32, same shape): this detector says nothing about where (module docstring)."""
        return np.zeros(np.shape(data), np.float32)

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float:
        """The volume score; the (all-zero) voxel scores are ignored."""
        return self.volume_score(data)

    # ------------------------------------------------------------------------------------ file
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (``.npz``, ``detector=volume-histogram``) atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    detector=np.array(DETECTOR_KIND),
                    version=np.array(FORMAT_VERSION),
                    histograms=self.histograms,
                    stats=self.stats,
                    stat_names=np.array(STAT_NAMES),
                    bins=np.array(self.bins),
                    k=np.array(self.k),
                    threshold=np.array(self.threshold),
                    weights=np.array(self.weights, np.float64),
                    scales=np.array(self.scales, np.float64),
                    calibration=np.array(json.dumps(self.calibration.to_dict())),
                    reference=self.reference if self.reference is not None else np.zeros(0),
                    names=np.array(self.names, dtype=str) if self.names else np.zeros(0, dtype="<U1"),
                    seed=np.array(self.seed),
                    combination=np.array(self.combination),
                    part_max=np.array(self.part_max if self.part_max is not None else (), np.float64),
                )
        return path

    @classmethod
    def from_npz(cls, z, path: str | os.PathLike = "<model>") -> "VolumeHistogramDetector":
        """Build from an open ``np.load`` of a model file; MoodError on a wrong, newer or incomplete file."""
        files = set(z.files)
        if "detector" in files and str(z["detector"]) != DETECTOR_KIND:
            raise MoodError(f"{path}: model file holds detector {str(z['detector'])!r}, not {DETECTOR_KIND!r}")
        missing = [key for key in ("detector", *_REQUIRED_KEYS) if key not in files]
        if missing:
            raise MoodError(f"{path}: volume-histogram model file lacks {', '.join(repr(m) for m in missing)}")
        version = int(z["version"])
        if version > FORMAT_VERSION:
            raise MoodError(f"{path}: volume-histogram model format {version} is newer than this mood-dpa understands ({FORMAT_VERSION})")
        try:
            calibration = Calibration.from_dict(json.loads(str(z["calibration"])))
        except json.JSONDecodeError as exc:
            raise MoodError(f"{path}: volume-histogram calibration is not valid JSON ({exc})") from None
        hists = np.asarray(z["histograms"], np.float64)
        if hists.ndim != 2 or hists.shape[1] != int(z["bins"]):
            raise MoodError(f"{path}: volume-histogram histograms have shape {hists.shape}, expected (N, {int(z['bins'])})")
        reference = np.asarray(z["reference"]) if "reference" in files and z["reference"].size else None
        names = [str(s) for s in z["names"]] if "names" in files else []
        try:
            return cls(
                hists, z["stats"], k=int(z["k"]), threshold=float(z["threshold"]), weights=np.asarray(z["weights"]).reshape(-1),
                scales=np.asarray(z["scales"]).reshape(-1), calibration=calibration,
                reference=reference, names=names, seed=int(z["seed"]) if "seed" in files else 0,
                combination=str(z["combination"]) if "combination" in files else "sum",  # version 1: the sum
                part_max=np.asarray(z["part_max"]).reshape(-1) if "part_max" in files else None,
            )
        except (TypeError, ValueError) as exc:
            raise MoodError(f"{path}: malformed volume-histogram model file ({exc})") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VolumeHistogramDetector":
        """Open a model file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise MoodError(f"{path}: no such model file")
        try:
            z = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise MoodError(f"{path}: not a readable .npz model file ({exc})") from None
        with z:
            return cls.from_npz(z, path)


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 8:
        raise MoodError(f"volume-histogram: bins must be an integer >= 8, got {bins!r}")


def fit_volume_histogram(volume_paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, seed: int = 0,
                         progress: bool = True) -> Path:
    """Fit the detector with its default settings on healthy volumes and write ``out`` (the recipe's fitter)."""
    return VolumeHistogramDetector.fit(volume_paths, seed=seed, progress=progress).save(out)
