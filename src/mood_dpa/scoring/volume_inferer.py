"""The volume inferer: a whole-volume model (:class:`VolumeModel`, e.g. the histogram baseline or a 3-D
network with its own sliding window) -> a raw map shaped like the volume. It covers every voxel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import MoodError


def check_weight(name: str, weight: float) -> None:
    """A scorer's weight must be a positive finite number (every inferer's rule)."""
    if not (weight > 0 and np.isfinite(weight)):
        raise MoodError(f"model {name!r}: weight must be a positive number (got {weight})")

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
        check_weight(self.name, self.weight)


@torch.no_grad()
def volume_map(volume: torch.Tensor, model: VolumeModel) -> torch.Tensor:
    """One volume model's raw map (float32, shaped like ``volume``, on its device)."""
    out = torch.as_tensor(model.raw_fn(volume)).to(device=volume.device, dtype=torch.float32)
    if tuple(out.shape) != tuple(volume.shape):
        raise MoodError(f"model {model.name!r} returned a map of shape {tuple(out.shape)} for a volume of {tuple(volume.shape)}")
    return out


