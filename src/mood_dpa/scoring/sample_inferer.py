"""The sample inferer: a SAMPLE-LEVEL model (:class:`SampleModel`, e.g. the volume-histogram detector)
gives one calibrated score in [0, 1] per volume and no voxel map. It never enters a map combination;
the detector shell joins such members' scores with the map-based sample score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import MoodError
from .volume_inferer import check_weight

SampleFn = Callable[[np.ndarray], float]


@dataclass
class SampleModel:
    """A sample-level scorer: ``score_fn(volume)`` takes the 3-D float32 array (CPU) and returns ONE score
    in [0, 1], already calibrated by the method (higher = more anomalous). No voxel map."""

    score_fn: SampleFn
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        check_weight(self.name, self.weight)


def score_sample(volume: np.ndarray | torch.Tensor, models: Sequence[SampleModel], combine: str = "mean") -> float:
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


