"""The volume scorer: raw scorers of any method -> one raw anomaly score per voxel, all on the device.

Two kinds of raw scorer, produced by the methods (:mod:`mood_dpa.methods.registry`):

* :class:`AxisModel`: a 2-D slice model for one axis (DPA, a 2-D segmenter); the scorer slices,
  batches, resizes and puts maps back as below;
* :class:`VolumeModel`: anything that maps the whole volume to a raw map at once (the histogram
  baseline, a 3-D network with its own sliding window); it covers every voxel.

A third kind gives no map at all: :class:`SampleModel`, a SAMPLE-LEVEL scorer (the volume-histogram
detector) that turns a volume into one calibrated score in [0, 1]. It never enters :func:`score_raw`;
the detector shell combines such members' scores with the map-based sample score
(:func:`score_sample` pools several of them).

For every slice model (one axis each):

1. take the slices along the model's axis and keep those the TRAINING rule keeps
   (:func:`mood_dpa.data.slices.kept_indices`, the one rule; seed defect 2);
2. in batches of ``batch_size`` kept slices: resize to S x S on the device with the training resize
   chain (:func:`~mood_dpa.data.slices.resize_slices`), call the model's ``maps_fn`` (reconstruction ->
   per-pixel numerator maps (B, L, S, S) and per-slice denominators (B, L) or (B,)), optionally under
   bf16 autocast on a GPU;
3. normalise per slice (map = sum_l num_l / den_l) or per volume (den_l = mean over all kept slices of
   the volume: the seed's inference rule), as the model file says (seed defect 3: now a stated choice);
4. resize each map back to its slice's native size (bilinear) and put it into a volume-shaped buffer
   BY ITS SLICE INDEX (``index_copy_``): skipped slices score 0 and never shift later maps (seed defect 1);
5. combine the models (slice and volume models alike) on the device (:data:`COMBINE_RULES`): ``mean`` (weighted mean over all models,
   a skipped slice counting as 0; the default), ``max`` (voxel-wise maximum; weights ignored) or ``mean_covered``
   (weighted mean over only the models whose kept slices contain the voxel; 0 where none does).

The only Python loop is over batches of slices. Every axis already lives on the volume's own grid
(maps go back to native slice size), so no 3-D resampling is needed.

:func:`score_raw` returns the raw combined scores (a torch tensor on the device). Calibration and the
background mask are applied by the detector shell (:mod:`mood_dpa.inference.detector`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.slices import SliceRule, kept_indices, resize_slices
from ..errors import MoodError

Normaliser = Literal["slice", "volume"]
CombineRule = Literal["mean", "max", "mean_covered"]
COMBINE_RULES: tuple[str, ...] = ("mean", "max", "mean_covered")
MapsFn = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]
EPS = 1e-8


@dataclass
class AxisModel:
    """One 2-D slice model as the scorer sees it.

    ``maps_fn(x01)`` takes (B, 1, S, S) slices in [0, 1] and returns ``(num, den)``: numerator maps
    (B, L, S, S) (or (B, S, S)) and denominators (B, L) (or (B,)); the pixel map is sum_l num_l / den_l.
    """

    axis: int
    size: int
    maps_fn: MapsFn
    rule: SliceRule = field(default_factory=SliceRule)
    normaliser: Normaliser = "slice"
    weight: float = 1.0
    name: str = ""
    #: bytes of the model's widest activation per slice (sizes the automatic CPU batch); 0 = unknown
    slice_bytes: int = 0

    def __post_init__(self) -> None:
        if self.axis not in (0, 1, 2):
            raise MoodError(f"model {self.name!r}: axis must be 0, 1 or 2 (got {self.axis})")
        if self.normaliser not in ("slice", "volume"):
            raise MoodError(f"model {self.name!r}: normaliser must be 'slice' or 'volume' (got {self.normaliser!r})")
        if not (self.weight > 0 and np.isfinite(self.weight)):
            raise MoodError(f"model {self.name!r}: weight must be a positive number (got {self.weight})")


VolumeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class VolumeModel:
    """A raw scorer of whole volumes: ``raw_fn(volume)`` takes the 3-D float32 tensor (on the scoring
    device) and returns a raw map of the same shape (higher = more anomalous; any scale, the shell
    calibrates it). It covers every voxel (for ``mean_covered``)."""

    raw_fn: VolumeFn
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if not (self.weight > 0 and np.isfinite(self.weight)):
            raise MoodError(f"model {self.name!r}: weight must be a positive number (got {self.weight})")


SampleFn = Callable[[np.ndarray], float]


@dataclass
class SampleModel:
    """A sample-level scorer: ``score_fn(volume)`` takes the 3-D float32 array (CPU) and returns ONE score
    in [0, 1], already calibrated by the method (higher = more anomalous). No voxel map."""

    score_fn: SampleFn
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if not (self.weight > 0 and np.isfinite(self.weight)):
            raise MoodError(f"model {self.name!r}: weight must be a positive number (got {self.weight})")


def score_sample(volume: np.ndarray | torch.Tensor, models: Sequence[SampleModel], combine: CombineRule = "mean") -> float:
    """One score in [0, 1] from sample-level scorers: ``max``, or the weighted mean (``mean`` and
    ``mean_covered``: a sample scorer covers the whole volume)."""
    if not models:
        raise MoodError("a sample-level member needs at least one model")
    data = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    values = []
    for model in models:
        v = float(model.score_fn(data))
        if not np.isfinite(v):
            v = 1.0  # as the calibrations do: an undefined score is the most abnormal
        values.append(min(max(v, 0.0), 1.0))
    if combine == "max":
        return max(values)
    w = [float(m.weight) for m in models]
    return float(sum(wi * vi for wi, vi in zip(w, values)) / sum(w))


@torch.no_grad()
def volume_map(volume: torch.Tensor, model: VolumeModel) -> torch.Tensor:
    """One volume model's raw map (float32, shaped like ``volume``, on its device)."""
    out = torch.as_tensor(model.raw_fn(volume)).to(device=volume.device, dtype=torch.float32)
    if tuple(out.shape) != tuple(volume.shape):
        raise MoodError(f"model {model.name!r} returned a map of shape {tuple(out.shape)} for a volume of {tuple(volume.shape)}")
    return out


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to_native(maps: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, L, S, S) -> (B, L, h, w): bilinear (antialiased when shrinking), on the tensor's device."""
    if tuple(maps.shape[-2:]) == tuple(hw):
        return maps
    shrink = hw[0] < maps.shape[-2] or hw[1] < maps.shape[-1]
    return F.interpolate(maps, size=hw, mode="bilinear", align_corners=False, antialias=shrink)


def _as_maps(num: torch.Tensor, den: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    num = num.float()
    if num.dim() == 3:
        num = num[:, None]
    if num.dim() != 4 or num.shape[0] != b:
        raise ValueError(f"maps_fn returned numerators of shape {tuple(num.shape)} for {b} slices")
    den = den.float().reshape(b, -1)
    if den.shape[1] != num.shape[1]:
        raise ValueError(f"maps_fn returned {num.shape[1]} numerator layer(s) but {den.shape[1]} denominator(s)")
    return num, den


@torch.no_grad()
def axis_map(
    volume: torch.Tensor,
    model: AxisModel,
    batch_size: int = 64,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One model's raw map of a volume: ``(map shaped like volume, kept slice indices)``, on volume's device.

    ``volume``: a 3-D float tensor with intensities in about [0, 1] (the models' input range).
    """
    if volume.dim() != 3:
        raise MoodError(f"expected a 3-D volume, got shape {tuple(volume.shape)}")
    if batch_size < 1:
        raise MoodError(f"batch size must be >= 1 (got {batch_size})")
    dev = volume.device
    stack = volume.movedim(model.axis, 0)  # (n, h, w) view, slice i = volume index i along the axis
    n, h, w = stack.shape
    idx = torch.as_tensor(kept_indices(volume, model.axis, model.rule), dtype=torch.long, device=dev)
    buf: torch.Tensor | None = None  # (n, L', h, w): L' = 1 (per-slice) or L (per-volume)
    dens: list[torch.Tensor] = []
    for start in range(0, int(idx.numel()), batch_size):
        b = idx[start : start + batch_size]
        x = resize_slices(stack.index_select(0, b), model.size).clamp(0.0, 1.0)
        with _autocast(dev, amp):
            num, den = model.maps_fn(x)
        num, den = _as_maps(num, den, int(b.numel()))
        if model.normaliser == "slice":
            num = (num / den.clamp_min(EPS)[:, :, None, None]).sum(1, keepdim=True)
        else:
            dens.append(den)
        m = _to_native(num, (h, w))
        if buf is None:
            buf = torch.zeros((n, m.shape[1], h, w), dtype=torch.float32, device=dev)
        buf.index_copy_(0, b, m)
    if buf is None:  # no kept slice: the model sees nothing in this volume
        return torch.zeros_like(volume, dtype=torch.float32), idx
    if model.normaliser == "volume":
        dbar = torch.cat(dens, 0).mean(0).clamp_min(EPS)  # (L,): one denominator per layer for the volume
        out = (buf / dbar[None, :, None, None]).sum(1)
    else:
        out = buf[:, 0]
    return out.movedim(0, model.axis), idx


@torch.no_grad()
def score_raw(
    volume: np.ndarray | torch.Tensor,
    models: Sequence["AxisModel | VolumeModel"],
    combine: CombineRule = "mean",
    batch_size: int = 64,
    device: torch.device | str | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Raw combined scores (float32 tensor on ``device``, shaped like ``volume``) of all models
    (slice models and volume models alike; a volume model covers every voxel)."""
    if not models:
        raise MoodError("an ensemble needs at least one model")
    if combine not in COMBINE_RULES:
        raise MoodError(f"combine rule {combine!r} is not known (use one of {', '.join(COMBINE_RULES)})")
    dev = torch.device(device) if device is not None else (volume.device if isinstance(volume, torch.Tensor) else torch.device("cpu"))
    vol = torch.as_tensor(np.asarray(volume, np.float32) if not isinstance(volume, torch.Tensor) else volume)
    vol = vol.to(device=dev, dtype=torch.float32)
    if vol.dim() != 3:
        raise MoodError(f"expected a 3-D volume, got shape {tuple(vol.shape)}")
    acc: torch.Tensor | None = None
    wsum: torch.Tensor | float = 0.0
    for model in models:
        if isinstance(model, SampleModel):
            raise MoodError(f"model {model.name!r} is sample-level (no voxel map); it cannot enter a map combination")
        if isinstance(model, VolumeModel):
            m, idx = volume_map(vol, model), None
        else:
            m, idx = axis_map(vol, model, batch_size=batch_size, amp=amp)
        w = float(model.weight)
        if combine == "max":
            acc = m if acc is None else torch.maximum(acc, m, out=acc)
            continue
        acc = m.mul(w) if acc is None else acc.add_(m, alpha=w)
        if combine == "mean":
            wsum = float(wsum) + w
        elif idx is None:  # mean_covered, a volume model: it covers every voxel
            wsum = torch.full_like(vol, w) if isinstance(wsum, float) else wsum.add_(w)
        else:  # mean_covered: weight only where this model's kept slices lie
            seen = torch.zeros(vol.shape[model.axis], dtype=torch.float32, device=dev)
            seen[idx] = w
            shape = [1, 1, 1]
            shape[model.axis] = -1
            cover = seen.reshape(shape)
            wsum = cover.expand_as(vol).clone() if isinstance(wsum, float) else wsum.add_(cover)
        del m
    assert acc is not None
    if combine == "mean":
        acc.div_(float(wsum))
    elif combine == "mean_covered":
        acc = torch.where(wsum > 0, acc / torch.clamp(wsum, min=EPS), torch.zeros_like(acc))
    return torch.nan_to_num(acc, nan=float("inf"), posinf=float("inf"), neginf=0.0)


def device_for_rank(device: str | None = None) -> torch.device:
    """The device a (possibly sharded) prediction process should use.

    An explicit ``device`` wins; otherwise CUDA device :func:`mood_dpa.ranks.local_rank` (mod the device
    count) when CUDA is available, else the CPU.
    """
    if device:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise MoodError(f"--device {device!r}: not a device name (use cpu, cuda or cuda:N)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise MoodError(f"--device {device}: CUDA is not available on this machine")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MoodError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if torch.cuda.is_available():
        from ..ranks import local_rank

        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


# torch-free prediction plumbing lives in mood_dpa.inference.pipeline (re-exported for convenience)
from .pipeline import BackgroundWriter, shard_paths  # noqa: E402,F401
