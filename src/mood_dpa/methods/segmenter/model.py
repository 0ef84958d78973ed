"""The segmenter network and its model file.

Network: MONAI's ``BasicUNet`` (one input channel, one output channel of logits), for 2-D slices or 3-D
patches. We chose it over MONAI's ``UNet`` and over a hand-written one because it is the plain
nnU-Net-like encoder/decoder (two convs per level, instance norm, LeakyReLU, skip concatenation) that
the MOOD winners used, its six feature counts are the only knob (tiny for CPU demos, wide on a GPU), it
runs any input size divisible by 16 and, with instance norm, behaves the same under DDP without
synchronised batch statistics. MONAI installs beside torch 2.13 without pulling another torch.

Model file: one ``torch.save`` dict ``{"format": FORMAT, "version": 1, "meta": {...}, "state": state_dict}``
read back with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ...data.slices import SliceRule
from ...errors import MoodError
from ..model_file import load_model_file, save_model_file

FORMAT = "mood-dpa/segmenter-model"
VERSION = 1


def build_unet(dim: int, features, dropout: float = 0.0) -> nn.Module:
    from monai.networks.nets import BasicUNet  # heavy: monai only to build the net

    return BasicUNet(spatial_dims=int(dim), in_channels=1, out_channels=1, features=tuple(int(f) for f in features),
                     dropout=float(dropout))


class SegmenterNet(nn.Module):
    """U-Net: images in [0, 1] (B, 1, *spatial) -> anomaly logits of the same shape."""

    def __init__(self, dim: int, features, dropout: float = 0.0, seed: int | None = None) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise MoodError(f"segmenter: dim must be 2 or 3 (got {dim})")
        self.dim = int(dim)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.unet = build_unet(dim, features, dropout)
        else:
            self.unet = build_unet(dim, features, dropout)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.unet(x01 * 2.0 - 1.0)


class SegmenterModel(nn.Module):
    """A loaded model file: the net plus what the scorer needs (dim, axis, size or patch, slice rule)."""

    def __init__(self, net: SegmenterNet, meta: Mapping[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.meta = dict(meta)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def axis(self) -> int | None:
        a = self.meta.get("axis")
        return None if a is None else int(a)

    @property
    def size(self) -> int | None:
        s = self.meta.get("size")
        return None if s is None else int(s)

    @property
    def patch(self) -> tuple[int, int, int] | None:
        p = self.meta.get("patch")
        return None if p is None else tuple(int(v) for v in p)

    @property
    def rule(self):
        return SliceRule.from_dict(self.meta["rule"]) if self.meta.get("rule") else SliceRule()

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Anomaly probabilities in [0, 1], same shape as x01."""
        return torch.sigmoid(self.net(x01).float())

    def save(self, path: str | os.PathLike) -> Path:
        return save_segmenter_model(path, self.net, self.meta)


def save_segmenter_model(path: str | os.PathLike, net: SegmenterNet, meta: Mapping[str, Any]) -> Path:
    """Write the model file atomically; meta must hold dim and arch (features, dropout)."""
    missing = {"dim", "arch"} - set(meta)
    if missing:
        raise MoodError(f"segmenter model meta lacks {sorted(missing)}")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return save_model_file(path, FORMAT, VERSION, meta, state=state)


def load_segmenter_model(path: str | os.PathLike, device: str | torch.device | None = None) -> SegmenterModel:
    """Read a model file (weights_only); MoodError when it is missing, corrupt or not a segmenter file."""
    blob = load_model_file(path, FORMAT, VERSION, "segmenter")
    meta = blob["meta"]
    try:
        arch = meta["arch"]
        net = SegmenterNet(int(meta["dim"]), arch["features"], float(arch.get("dropout", 0.0)))
        net.load_state_dict(blob["state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise MoodError(f"{path}: segmenter model file is inconsistent ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    model = SegmenterModel(net, meta).eval()
    if device is not None:
        model = model.to(device)
    return model
