"""Histogram model -> the shell's volume scorer: the RAW rarity map only (the shell calibrates it)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ...scoring.volume_inferer import VolumeModel
from .model import HistogramModel


def volume_model(model, weight: float = 1.0) -> VolumeModel:
    """The raw scorer of a :class:`~mood_dpa.methods.histogram.model.HistogramModel` (numpy on the CPU)."""

    def raw_fn(volume: torch.Tensor) -> torch.Tensor:
        raw = model.raw_scores(volume.detach().float().cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(raw)).to(volume.device)

    return VolumeModel(raw_fn=raw_fn, weight=float(weight), name=model.name)


def load_scorers(path: str | os.PathLike, device: Any = None) -> list[VolumeModel]:
    """The registry's loader: a histogram ``.npz`` -> its one volume scorer."""
    return [volume_model(HistogramModel.load(path))]
