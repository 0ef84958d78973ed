"""Raw maps of several models -> one raw map per voxel, on the device (:data:`COMBINE_RULES`).

``mean`` (weighted mean over all models, a skipped slice counting as 0; the default), ``max``
(voxel-wise maximum; weights ignored) or ``mean_covered`` (weighted mean over only the models whose kept
slices contain the voxel; 0 where none does). Slice models and volume models mix freely (a volume model
covers every voxel). Calibration and the background mask come later, in the detector shell.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from ..errors import MoodError
from .sample_inferer import SampleModel
from .slice_inferer import EPS, AxisModel, axis_map
from .volume_inferer import VolumeModel, volume_map

CombineRule = Literal["mean", "max", "mean_covered"]
COMBINE_RULES: tuple[str, ...] = ("mean", "max", "mean_covered")


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


