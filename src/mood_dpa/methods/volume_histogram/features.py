"""The volume-histogram detector's features and distances: one volume -> its foreground intensity histogram
and scalar statistics; pairs of volumes -> per-part distances (histogram W1, statistics), kNN means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ...errors import MoodError

DEFAULT_BINS = 128
STAT_NAMES = ("foreground_fraction", "log_noise_floor")
NOISE_PERCENTILE = 10.0
NOISE_EPS = 1e-4


# ============================================================================================ features
@dataclass(frozen=True)
class VolumeFeatures:
    """What the detector keeps of one volume: foreground intensity histogram, foreground fraction, noise floor."""

    histogram: np.ndarray  # (bins,) float64, sums to 1 (all zeros when there is no foreground)
    fraction: float  # share of voxels > threshold
    noise: float  # noise floor: 10th percentile of the 3x3x3 local standard deviation inside the foreground

    @property
    def stats(self) -> np.ndarray:
        """The scalar statistics compared between volumes, in the order of :data:`STAT_NAMES`."""
        return np.array([self.fraction, np.log(self.noise + NOISE_EPS)], np.float64)

    @property
    def empty(self) -> bool:
        return not self.histogram.any()


def volume_features(data: np.ndarray, bins: int = DEFAULT_BINS, threshold: float = 0.0) -> VolumeFeatures:
    """The normalised foreground histogram (fixed bins over [0, 1]), foreground fraction and noise floor of a volume."""
    data = np.asarray(data)
    if data.size == 0:
        raise MoodError("volume-histogram: empty volume")
    mask = data > threshold  # NaN compares False: never foreground
    fg = data[mask].astype(np.float64)
    counts = np.bincount(np.clip((fg * bins).astype(np.int64), 0, bins - 1), minlength=bins).astype(np.float64)
    total = counts.sum()
    hist = counts / total if total > 0 else counts
    return VolumeFeatures(histogram=hist, fraction=float(fg.size) / float(data.size), noise=noise_floor(data, mask))


def noise_floor(data: np.ndarray, mask: np.ndarray) -> float:
    """The 10th percentile of the local (3x3x3) standard deviation over the foreground's interior.

    Why this statistic: noise and blur convolve the intensity histogram with a narrow kernel, which W1 hardly
    sees next to the healthy subject-to-subject shifts of the tissue peaks; a spatial statistic sees them.
    Edges and texture inflate the local spread of most voxels, but in the flattest tenth of the tissue it is
    mostly noise (a median of neighbour differences is dominated by partial-volume edges at small sizes).
    Interior = the foreground eroded once, so the background step at the border never counts.
    """
    if data.ndim != 3 or min(data.shape) < 3:
        return 0.0
    inner = ndimage.binary_erosion(mask, iterations=1)
    if not inner.any():
        inner = mask
    if not inner.any():
        return 0.0
    x = np.where(mask, data, 0).astype(np.float32)
    mean = ndimage.uniform_filter(x, 3, mode="constant")
    sq = ndimage.uniform_filter(x * x, 3, mode="constant")
    var = np.maximum(sq[inner].astype(np.float64) - mean[inner].astype(np.float64) ** 2, 0.0) * (27.0 / 26.0)
    return float(np.sqrt(np.percentile(var, NOISE_PERCENTILE)))


# ============================================================================================ distances
def wasserstein_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1-D Wasserstein distances between every row of ``a`` (n, bins) and of ``b`` (m, bins): (n, m).

    Histograms live on the bin centres of [0, 1] (width 1 / bins); W1 = width * sum_i |F_a(i) - F_b(i)|
    over the first bins - 1 cumulative sums (the last one is 1 for both).
    """
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"histograms with {a.shape[1]} and {b.shape[1]} bins")
    width = 1.0 / a.shape[1]
    ca = np.cumsum(a, axis=1)[:, :-1]
    cb = np.cumsum(b, axis=1)[:, :-1]
    out = np.empty((ca.shape[0], cb.shape[0]), np.float64)
    for i in range(ca.shape[0]):  # row by row: bounded memory for large training sets
        out[i] = np.abs(cb - ca[i]).sum(axis=1) * width
    return out


def pair_distances(
    hist_a: np.ndarray, stats_a: np.ndarray, hist_b: np.ndarray, stats_b: np.ndarray, scales: Sequence[float], weights: Sequence[float]
) -> np.ndarray:
    """The combined distance (module docstring) between every volume of set a and of set b: (n, m).

    ``stats_*``: (n, len(STAT_NAMES)); ``scales``: W1's then each statistic's; ``weights``: each statistic's.
    """
    d = wasserstein_matrix(hist_a, hist_b) / scales[0]
    sa = np.asarray(stats_a, np.float64).reshape(len(hist_a) if np.ndim(hist_a) == 2 else 1, -1)
    sb = np.asarray(stats_b, np.float64).reshape(len(hist_b) if np.ndim(hist_b) == 2 else 1, -1)
    for j, w in enumerate(weights):
        if w > 0:
            d = d + w * np.abs(sa[:, j, None] - sb[None, :, j]) / scales[1 + j]
    return d


def part_distances(
    hist_a: np.ndarray, stats_a: np.ndarray, hist_b: np.ndarray, stats_b: np.ndarray, scales: Sequence[float], weights: Sequence[float]
) -> list[np.ndarray]:
    """The unit-free parts (n, m) of the distance: W1 / s_W, then each statistic with a weight > 0 (|diff| / s)."""
    parts = [wasserstein_matrix(hist_a, hist_b) / scales[0]]
    sa = np.asarray(stats_a, np.float64).reshape(len(hist_a) if np.ndim(hist_a) == 2 else 1, -1)
    sb = np.asarray(stats_b, np.float64).reshape(len(hist_b) if np.ndim(hist_b) == 2 else 1, -1)
    for j, w in enumerate(weights):
        if w > 0:
            parts.append(np.abs(sa[:, j, None] - sb[None, :, j]) / scales[1 + j])
    return parts


def part_weights(weights: Sequence[float]) -> list[float]:
    """The weight of every part :func:`part_distances` returns (W1's is 1; statistics with weight 0 are left out)."""
    return [1.0] + [float(w) for w in weights if w > 0]


def combined_knn(parts_knn: Sequence[np.ndarray], part_max: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    """The ``max`` combination: max over parts of weight * (part's kNN distance / its leave-one-out normal maximum)."""
    return np.max([w * np.asarray(d, np.float64) / m for d, m, w in zip(parts_knn, part_max, weights)], axis=0)


def knn_mean(distances: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` smallest entries of every row of an (n, m) distance matrix (k <= m)."""
    distances = np.asarray(distances, np.float64)
    if not 1 <= k <= distances.shape[1]:
        raise ValueError(f"k={k} with {distances.shape[1]} columns")
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def leave_one_out_knn(distances: np.ndarray, k: int) -> np.ndarray:
    """Per training volume, the mean distance to its ``k`` nearest OTHER training volumes (square matrix)."""
    d = np.array(distances, np.float64)
    np.fill_diagonal(d, np.inf)
    return knn_mean(d, k)


def _pair_scale(values: np.ndarray, fallback: float) -> float:
    """Median of the off-diagonal entries of a square matrix (the typical healthy spread); > 0."""
    n = values.shape[0]
    off = values[~np.eye(n, dtype=bool)]
    s = float(np.median(off)) if off.size else 0.0
    if not (np.isfinite(s) and s > 0):  # identical training volumes: any positive unit will do
        pos = off[off > 0]
        s = float(pos.min()) if pos.size else fallback
    return s
