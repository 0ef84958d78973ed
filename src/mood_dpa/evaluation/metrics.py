"""Exact AP and ROC-AUC, streaming over float16 codes (the MOOD pixel-level rule).

The MOOD evaluator reads predictions as float16 and clips them to [0, 1]. Non-negative float16
values are ordered like their bit patterns, and [0, 1] holds exactly 15,361 of them (codes
0x0000 ... 0x3C00). So two count histograms (positives, negatives) over those codes hold everything
``sklearn.metrics.average_precision_score`` and ``roc_auc_score`` need: the exact pooled metrics over
billions of voxels come from one streaming pass in constant memory, with no sort.

Public API
----------
- :func:`float16_codes` - scores -> uint16 codes (float16, clipped to [0, 1]); NaN is refused.
- :class:`ScoreHistogram` - ``add(scores, labels)`` in chunks, ``ap()``, ``roc_auc()``, ``+``.
- :func:`histogram_ap`, :func:`histogram_roc_auc` - the metrics of given count arrays (also 2-D: one
  row per bootstrap replicate).
- :func:`average_precision`, :func:`roc_auc` - exact metrics of arbitrary float scores by sorting
  (used for the sample level, a few hundred scores).
- :func:`histogram_best_dice` / ``ScoreHistogram.best_dice()`` - the best Dice over every float16
  threshold of the pooled voxels, from the same histogram (localisation beside AP).
- :func:`case_hit` - does one case's hottest connected region overlap its anomaly (the hit rate).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import MoodError

#: Number of distinct float16 values in [0, 1] (codes 0 ... 0x3C00).
N_CODES = int(np.float16(1.0).view(np.uint16)) + 1  # 15361
#: Voxels handled per step when counting (bounds temporaries to a few tens of MB).
CHUNK = 1 << 22


def float16_codes(scores: np.ndarray, *, what: str = "scores") -> np.ndarray:
    """The MOOD reading of ``scores``: cast to float16, clip to [0, 1], return the uint16 codes.

    Raises MoodError when a value is NaN (the official metric fails on NaN). +-inf clip to 1 / 0.
    """
    s = np.asarray(scores)
    if s.dtype != np.float16:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond 65504 reads as inf, then clips to 1
            s = s.astype(np.float16)
    if np.isnan(s).any():
        raise MoodError(f"{what}: {int(np.isnan(s).sum())} NaN values (the MOOD metric is undefined with NaN)")
    s = np.clip(s, np.float16(0.0), np.float16(1.0))
    # The only value with the sign bit left after clipping is -0.0; it reads as 0.
    return s.view(np.uint16) & np.uint16(0x7FFF)


class ScoreHistogram:
    """Counts of positive and negative voxels per float16 code: the sufficient statistic of the metrics."""

    __slots__ = ("pos", "neg")

    def __init__(self, pos: np.ndarray | None = None, neg: np.ndarray | None = None):
        self.pos = np.zeros(N_CODES, np.int64) if pos is None else np.asarray(pos, np.int64)
        self.neg = np.zeros(N_CODES, np.int64) if neg is None else np.asarray(neg, np.int64)
        if self.pos.shape != (N_CODES,) or self.neg.shape != (N_CODES,):
            raise ValueError(f"histograms must have shape ({N_CODES},)")

    def add_codes(self, codes: np.ndarray, labels: np.ndarray) -> "ScoreHistogram":
        """Count uint16 ``codes`` (from :func:`float16_codes`) with boolean/0-1 ``labels`` of the same size."""
        codes = np.asarray(codes).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        if codes.size != labels.size:
            raise ValueError(f"{codes.size} scores but {labels.size} labels")
        for start in range(0, codes.size, CHUNK):
            c = codes[start : start + CHUNK].astype(np.int32)
            lab = labels[start : start + CHUNK].astype(bool)
            both = np.bincount(c * 2 + lab, minlength=2 * N_CODES)
            self.neg += both[0::2]
            self.pos += both[1::2]
        return self

    def add(self, scores: np.ndarray, labels: np.ndarray, *, what: str = "scores") -> "ScoreHistogram":
        """Count float ``scores`` (read as float16, clipped to [0, 1]) against binary ``labels``."""
        scores = np.asarray(scores).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        if scores.size != labels.size:
            raise ValueError(f"{scores.size} scores but {labels.size} labels")
        for start in range(0, scores.size, CHUNK):
            self.add_codes(float16_codes(scores[start : start + CHUNK], what=what), labels[start : start + CHUNK])
        return self

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        return ScoreHistogram(self.pos + other.pos, self.neg + other.neg)

    def __iadd__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        self.pos += other.pos
        self.neg += other.neg
        return self

    @property
    def positives(self) -> int:
        return int(self.pos.sum())

    @property
    def negatives(self) -> int:
        return int(self.neg.sum())

    def ap(self) -> float:
        """Exact average precision (sklearn's definition); NaN when there is no positive."""
        return float(histogram_ap(self.pos, self.neg))

    def roc_auc(self) -> float:
        """Exact ROC-AUC (ties count one half, as sklearn); NaN without positives or negatives."""
        return float(histogram_roc_auc(self.pos, self.neg))

    def best_dice(self) -> float:
        """Best Dice over all float16 thresholds (see :func:`histogram_best_dice`); NaN without positives."""
        return float(histogram_best_dice(self.pos, self.neg)[0])


def histogram_ap(pos: np.ndarray, neg: np.ndarray) -> np.ndarray | float:
    """Average precision from per-threshold counts, ordered by increasing score.

    ``pos``/``neg`` have the score bins along the last axis (any leading axes are replicates).
    Equals ``sklearn.metrics.average_precision_score``: sum over distinct scores, from the highest
    down, of (recall gain) x (precision at that threshold). Bins without any sample add nothing.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    # Walk from the highest score down: cumulative counts at each threshold.
    tp = np.cumsum(pos[..., ::-1], axis=-1)
    fp = np.cumsum(neg[..., ::-1], axis=-1)
    total = tp[..., -1:]
    hits = pos[..., ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(hits > 0, tp / np.maximum(tp + fp, 1.0), 0.0)
        ap = np.sum(hits * precision, axis=-1) / total[..., 0]
    ap = np.where(total[..., 0] > 0, ap, np.nan)
    return ap if ap.ndim else float(ap)


def histogram_roc_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray | float:
    """ROC-AUC from per-threshold counts (Mann-Whitney with half credit for ties)."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    # positives strictly above each bin
    above = np.cumsum(pos[..., ::-1], axis=-1)[..., ::-1] - pos
    n_pos = pos.sum(axis=-1)
    n_neg = neg.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.sum(neg * (above + 0.5 * pos), axis=-1) / (n_pos * n_neg)
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return auc if auc.ndim else float(auc)


def histogram_best_dice(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(best Dice, its threshold) over the segmentations ``score >= t`` for every float16 code ``t``.

    Why: AP does not say whether a usable segmentation exists; anomaly-segmentation studies report
    the best Dice a single global threshold can reach. With TP(t), FP(t) the positives / negatives at
    or above code ``t`` and FN = P - TP(t): Dice(t) = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P).
    The threshold is the float16 value of the best code (the highest one when several tie); a
    threshold above every score (an empty segmentation, Dice 0) is allowed. NaN (and threshold NaN)
    when there is no positive. Counts in, two numbers out: memory does not grow with the voxels.
    """
    pos = np.asarray(pos, dtype=np.float64).reshape(-1)
    neg = np.asarray(neg, dtype=np.float64).reshape(-1)
    total = float(pos.sum())
    if total <= 0:
        return float("nan"), float("nan")
    tp = np.cumsum(pos[::-1])[::-1]  # at or above each code
    fp = np.cumsum(neg[::-1])[::-1]
    dice = 2.0 * tp / (tp + fp + total)
    best = int(dice.size - 1 - np.argmax(dice[::-1]))  # the highest code among equal best values
    if dice[best] <= 0.0:
        return 0.0, float("nan")
    threshold = float(np.uint16(best).view(np.float16)) if pos.size == N_CODES else float(best)
    return float(dice[best]), threshold


#: Hit rate: the hottest region is grown over voxels >= max(PEAK_FRACTION x case max, the case's top
#: TOP_FRACTION quantile) (see :func:`case_hit`).
PEAK_FRACTION = 0.5
TOP_FRACTION = 1e-3


def case_hit(
    scores: np.ndarray, labels: np.ndarray, *, peak_fraction: float = PEAK_FRACTION, top_fraction: float = TOP_FRACTION
) -> bool | None:
    """Does the case's hottest connected region overlap its anomaly? None when the case has no anomaly.

    Definition (scores read as MOOD reads them: float16, clipped to [0, 1]; ``labels`` > 0 anomalous):

    * ``m`` = the case maximum; a case whose map is 0 everywhere (or missing) is a miss.
    * threshold ``t`` = the larger of ``peak_fraction * m`` and the lowest score ``c`` such that at
      most ``k = ceil(top_fraction * voxels)`` voxels are ``>= c`` (``m`` itself when the maximum is
      tied over more than ``k`` voxels): the region is both near the peak and small (never more than
      the top 0.1 % of the volume, a tied maximum aside), so a broad plateau of normal tissue above
      half the peak cannot reach a far-away lesion and count as a hit.
    * the hottest region = the 26-connected components (``scipy.ndimage.label``) of ``score >= t``
      that contain a voxel equal to ``m`` (all of them when the maximum is tied: no dependence on
      voxel order).
    * the case hits when that region intersects the label. A map that is flat at its maximum
      over the whole volume makes one region of everything and hits any anomaly: read the hit rate
      beside AP and best Dice.
    """
    codes = float16_codes(scores)
    lab = np.asarray(labels) > 0
    if codes.shape != lab.shape:
        raise ValueError(f"scores of shape {codes.shape} but labels of shape {lab.shape}")
    if not lab.any():
        return None
    flat = codes.reshape(-1)
    top = int(flat.max())
    if top == 0:
        return False
    counts = np.bincount(flat, minlength=N_CODES)
    k = max(1, int(np.ceil(top_fraction * flat.size)))
    at_or_above = np.cumsum(counts[::-1])[::-1]
    within = np.flatnonzero(at_or_above <= k)  # codes whose 'score >= code' set holds at most k voxels
    kth = min(int(within[0]), top) if within.size else top
    values = np.arange(N_CODES, dtype=np.uint16).view(np.float16).astype(np.float64)
    half = int(np.searchsorted(values, peak_fraction * values[top], side="left"))  # first code >= peak_fraction * m
    mask = codes >= max(kth, half)  # always holds the maximum
    # label only the bounding box of the hot voxels (they are few; the volume may be 256^3)
    idx = np.nonzero(mask)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    components, _ = ndimage.label(mask[box], structure=np.ones((3,) * mask.ndim, bool))
    hottest = np.unique(components[codes[box] == top])
    return bool(np.isin(components[lab[box]], hottest[hottest > 0]).any())


def _sorted_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct score (increasing): number of positives and negatives."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if scores.size != labels.size:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if np.isnan(scores).any():
        raise MoodError("scores contain NaN (the MOOD metric is undefined with NaN)")
    uniq, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=labels, minlength=uniq.size)
    neg = np.bincount(inverse, weights=~labels, minlength=uniq.size)
    return pos, neg


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact AP of arbitrary float scores (sklearn's definition), NaN without positives."""
    return float(histogram_ap(*_sorted_counts(scores, labels)))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC-AUC of arbitrary float scores (ties count one half), NaN when undefined."""
    return float(histogram_roc_auc(*_sorted_counts(scores, labels)))
