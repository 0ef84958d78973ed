"""DPA model -> the shell's slice scorer (:class:`mood_dpa.scoring.slice_inferer.AxisModel`).

The shell does everything after the raw map (axis combination, background mask, calibration,
sample rule); this module only says how a DPA turns slices into numerator maps and denominators.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ...scoring.slice_inferer import AxisModel
from .model import load_dpa_model


def dpa_maps_fn(model):
    """``x01 (B,1,S,S) -> (numerators (B,L,S,S) with the layer weights on them, denominators (B,L))``."""

    def maps_fn(x01):
        out = model.pixel_maps(x01)
        w = torch.as_tensor(model.weights, dtype=out.numerators.dtype, device=out.numerators.device)
        # layer weights go on the numerators, so sum_l num_l / den_l is the model's weighted map
        return out.numerators * w[None, :, None, None], out.denominators

    return maps_fn


def slice_bytes(meta: dict) -> int:
    """Widest activation of one slice in bytes (autoencoder channels or backbone width) x S^2 x 4."""
    width = max(int(meta.get("arch", {}).get("channels", 64)), int(64 * float(meta.get("vgg_width") or 0)))
    return width * int(meta["size"]) ** 2 * 4


def axis_model(model, weight: float = 1.0, name: str | None = None) -> AxisModel:
    """The slice scorer of a loaded :class:`~mood_dpa.methods.dpa.model.DPAModel` (on its device)."""
    return AxisModel(
        axis=model.axis, size=model.size, maps_fn=dpa_maps_fn(model), rule=model.rule, normaliser=model.normaliser,
        weight=float(weight), name=name or str(model.meta.get("name", "dpa")), slice_bytes=slice_bytes(model.meta),
    )


def load_scorers(path: str | os.PathLike, device: Any = None) -> list[AxisModel]:
    """The registry's loader: a DPA model file -> its one slice scorer (the model sits on ``device``)."""
    model = load_dpa_model(path, "cpu")
    if device is not None:
        model = model.to(device)
    return [axis_model(model)]
