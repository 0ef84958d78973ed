"""The sample score of a volume: one number in [0, 1] pooled from its calibrated voxel scores (:class:`SampleRule`).

``max`` (the seed; fragile to a single noisy voxel, seed defect 6), ``topk`` (mean of the top
``fraction`` of voxels, at least one; the default, fraction 1e-4 = about 1,700 voxels of a 256^3
volume, far fewer than the smallest MOOD anomaly) or ``smoothed_max`` (maximum after a Gaussian blur
of ``sigma`` voxels), ``slice_mean_smoothed`` (FPI's rule, :func:`slice_mean_smoothed`: per-slice
mean scores along ``axis``, smoothed along the axis, the top ``fraction`` of slices averaged: a
volume-wide change raises every slice, a lesion a run of slices) or ``above_normal_volume``
(:func:`above_normal_volume`: the share of foreground voxels scored above ``level``, by default
``y_top``, the calibrated value of the normal maximum: how much of the volume no normal voxel
reached). The tuning of a detector picks one among :data:`CANDIDATE_RULES` by sample-level AP on a
labelled tuning set (:mod:`mood_dpa.inference.tuning`). Every rule maps [0, 1] scores to a value in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MoodError
from .calibration import DEFAULT_Y_TOP


SampleKind = Literal["max", "topk", "smoothed_max", "slice_mean_smoothed", "above_normal_volume"]
SAMPLE_KINDS = ("max", "topk", "smoothed_max", "slice_mean_smoothed", "above_normal_volume")


def slice_mean_smoothed(voxel_scores: np.ndarray, axis: int = 0, sigma: float = 1.0, fraction: float = 0.1) -> float:
    """FPI's sample rule: the mean of the top ``fraction`` (at least one) of the per-slice mean scores
    along ``axis``, after a Gaussian smoothing of ``sigma`` slices along that axis.

    The kernel is truncated at 3 sigma and renormalised at the ends (an edge slice is the weighted
    mean of the slices that exist, not diluted by zeros beyond the volume). Per-slice means use every
    voxel of the slice (the background is 0 in calibrated maps), in float64.
    """
    v = np.asarray(voxel_scores, np.float64)
    if v.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {v.shape}")
    means = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1).mean(axis=1)
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    n = means.size
    smooth = np.empty(n)
    for i in range(n):
        j = i + offsets
        ok = (j >= 0) & (j < n)
        smooth[i] = np.sum(kernel[ok] * means[j[ok]]) / np.sum(kernel[ok])
    k = max(1, int(round(fraction * n)))
    return float(np.sort(smooth)[-k:].mean())


def above_normal_volume(voxel_scores: np.ndarray, level: float = DEFAULT_Y_TOP, mask: np.ndarray | None = None) -> float:
    """Share of the foreground voxels whose calibrated score is strictly above ``level`` (0 when empty).

    ``level`` is the calibration's ``y_top``: the calibrated value of the normal maximum, so the
    result is the part of the volume that no normal training voxel reached. The foreground is
    ``mask`` or, when None, the voxels with a score > 0 (calibrated maps are 0 on the background).
    """
    v = np.asarray(voxel_scores, np.float64)
    fg = (v > 0) if mask is None else np.asarray(mask, bool)
    n = int(np.count_nonzero(fg))
    return float(np.count_nonzero(v[fg] > level) / n) if n else 0.0


@dataclass(frozen=True)
class SampleRule:
    """How one volume score is pooled from its calibrated voxel scores (all kinds: [0, 1] -> [0, 1])."""

    kind: SampleKind = "topk"
    fraction: float = 1e-4  # topk: share of the voxels averaged; slice_mean_smoothed: share of the slices
    sigma: float = 1.0  # smoothed_max: Gaussian sigma in voxels; slice_mean_smoothed: in slices
    axis: int = 0  # slice_mean_smoothed: the slicing axis
    level: float = DEFAULT_Y_TOP  # above_normal_volume: the calibrated normal maximum (y_top)

    def __post_init__(self) -> None:
        if self.kind not in SAMPLE_KINDS:
            raise MoodError(f"sample rule {self.kind!r} is not known (use {', '.join(SAMPLE_KINDS)})")
        if self.axis not in (0, 1, 2):
            raise MoodError(f"sample rule: axis must be 0, 1 or 2, got {self.axis}")
        if not 0.0 <= self.level < 1.0:
            raise MoodError(f"sample rule: level must be in [0, 1), got {self.level}")
        if not 0.0 < self.fraction <= 1.0:
            raise MoodError(f"sample rule: fraction must be in (0, 1], got {self.fraction}")
        if not 0.0 < self.sigma <= 50.0:
            raise MoodError(f"sample rule: sigma must be in (0, 50], got {self.sigma}")

    def to_dict(self) -> dict:
        """kind, fraction, sigma; plus ``axis`` / ``level`` for the kinds that use them (older files stay valid)."""
        d = asdict(self)
        if self.kind != "slice_mean_smoothed":
            d.pop("axis")
        if self.kind != "above_normal_volume":
            d.pop("level")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SampleRule":
        try:
            return cls(kind=d.get("kind", "topk"), fraction=float(d.get("fraction", 1e-4)), sigma=float(d.get("sigma", 1.0)),
                       axis=int(d.get("axis", 0)), level=float(d.get("level", DEFAULT_Y_TOP)))
        except (TypeError, ValueError) as exc:
            raise MoodError(f"sample rule: malformed ({exc})") from None

    def describe(self) -> str:
        if self.kind == "topk":
            return f"topk(fraction={self.fraction:g})"
        if self.kind == "smoothed_max":
            return f"smoothed_max(sigma={self.sigma:g})"
        if self.kind == "slice_mean_smoothed":
            return f"slice_mean_smoothed(axis={self.axis}, sigma={self.sigma:g}, fraction={self.fraction:g})"
        if self.kind == "above_normal_volume":
            return f"above_normal_volume(level={self.level:g})"
        return "max"

    def score(self, voxel_scores: np.ndarray | torch.Tensor) -> float:
        """The volume's score in [0, 1] (finite) from its calibrated voxel scores."""
        v = torch.as_tensor(voxel_scores)
        v = torch.nan_to_num(v.float(), nan=1.0).clamp(0.0, 1.0)
        if v.numel() == 0:
            return 0.0
        if self.kind == "slice_mean_smoothed":
            return float(min(max(slice_mean_smoothed(v.cpu().numpy(), self.axis, self.sigma, self.fraction), 0.0), 1.0))
        if self.kind == "above_normal_volume":
            return above_normal_volume(v.cpu().numpy(), self.level)
        if self.kind == "max":
            s = v.max()
        elif self.kind == "topk":
            k = max(1, int(round(self.fraction * v.numel())))
            s = torch.topk(v.reshape(-1), min(k, v.numel()), sorted=False).values.double().mean()
        else:
            s = gaussian_blur3d(v, self.sigma).max()
        return float(min(max(float(s), 0.0), 1.0))


def gaussian_blur3d(vol: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 3-D tensor (zero padding, kernel truncated at 3 sigma), on its device."""
    if vol.dim() != 3:
        raise ValueError(f"expected a 3-D tensor, got {tuple(vol.shape)}")
    radius = max(1, int(math.ceil(3.0 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32, device=vol.device)
    k = torch.exp(-0.5 * (grid / sigma) ** 2)
    k = k / k.sum()
    x = vol.float()[None, None]
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = radius
        x = F.conv3d(F.pad(x, pad), k.reshape(shape))
    return x[0, 0]


#: Candidates tried by :func:`choose_sample_rule`; the default comes first and wins ties.
CANDIDATE_RULES: tuple[SampleRule, ...] = (
    SampleRule("topk", fraction=1e-4),
    SampleRule("max"),
    SampleRule("topk", fraction=1e-5),
    SampleRule("topk", fraction=1e-3),
    SampleRule("topk", fraction=1e-2),
    SampleRule("topk", fraction=0.05),  # the mean of the hottest 5 % / 25 % of the map (Baugh et al. 2023: 25 %):
    SampleRule("topk", fraction=0.25),  # a change of the whole volume raises it, one hot voxel does not
    SampleRule("smoothed_max", sigma=1.0),
    SampleRule("smoothed_max", sigma=2.0),
    SampleRule("slice_mean_smoothed", sigma=2.0, fraction=0.1, axis=0),
    SampleRule("above_normal_volume", level=DEFAULT_Y_TOP),
)


def candidate_scores(voxel_scores: np.ndarray | torch.Tensor, rules: Sequence[SampleRule] = CANDIDATE_RULES) -> list[float]:
    """The sample score of one volume under every candidate rule."""
    return [r.score(voxel_scores) for r in rules]
