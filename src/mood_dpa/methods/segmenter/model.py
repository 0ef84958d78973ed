"""The segmenter network and its model file.

Network: MONAI's ``BasicUNet`` (one input channel, one output channel of logits), for 2-D slices or 3-D
patches, or (``model.net: dynunet``) MONAI's ``DynUNet``, nnU-Net's network, whose lower decoder levels can
have output heads of their own for deep supervision (CitAI's and nnU-Net's recipe; BasicUNet has none). We chose it over MONAI's ``UNet`` and over a hand-written one because it is the plain
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


#: the networks a segmenter can be (``model.net``)
NETS = ("basic", "dynunet")


def build_unet(dim: int, features, dropout: float = 0.0, net: str = "basic", deep_supervision: int = 0) -> nn.Module:
    """MONAI's BasicUNet, or its DynUNet (nnU-Net's: the first five feature counts, strides 1-2-2-2-2, instance
    norm, LeakyReLU) with ``deep_supervision`` extra output heads on the lower decoder levels (training only)."""
    from monai.networks.nets import BasicUNet, DynUNet  # heavy: monai only to build the net

    if net not in NETS:
        raise MoodError(f"segmenter: net {net!r} is not known (use one of {', '.join(NETS)})")
    if net == "basic":
        if deep_supervision:
            raise MoodError("segmenter: deep supervision needs net dynunet")
        return BasicUNet(spatial_dims=int(dim), in_channels=1, out_channels=1, features=tuple(int(f) for f in features),
                         dropout=float(dropout))
    levels = [int(f) for f in features][:5]
    return DynUNet(spatial_dims=int(dim), in_channels=1, out_channels=1, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2],
                   upsample_kernel_size=[2] * 4, filters=levels, dropout=float(dropout) or None, norm_name="instance",
                   deep_supervision=deep_supervision > 0, deep_supr_num=max(1, int(deep_supervision)))


def supervision_weights(heads: int) -> list[float]:
    """nnU-Net's deep-supervision weights: 1, 1/2, 1/4, ... over the full-size head and the lower ones, summing to 1."""
    w = [0.5**i for i in range(heads)]
    return [v / sum(w) for v in w]


class SegmenterNet(nn.Module):
    """U-Net: images in [0, 1] (B, 1, *spatial) -> anomaly logits of the same shape."""

    def __init__(self, dim: int, features, dropout: float = 0.0, seed: int | None = None, net: str = "basic",
                 deep_supervision: int = 0) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise MoodError(f"segmenter: dim must be 2 or 3 (got {dim})")
        self.dim = int(dim)
        self.deep_supervision = int(deep_supervision)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.unet = build_unet(dim, features, dropout, net, deep_supervision)
        else:
            self.unet = build_unet(dim, features, dropout, net, deep_supervision)

    def heads(self, x01: torch.Tensor) -> list[torch.Tensor]:
        """Every output head's logits at full size: the main one first, then (deep supervision, training mode) the
        lower decoder levels' (MONAI upsamples them to the input size)."""
        out = self.unet(x01 * 2.0 - 1.0)
        if self.deep_supervision and self.training:
            return list(out.unbind(dim=1))
        return [out]

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.heads(x01)[0]


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
        net = SegmenterNet(int(meta["dim"]), arch["features"], float(arch.get("dropout", 0.0)),
                           net="dynunet" if arch.get("net") == "monai.DynUNet" else "basic",
                           deep_supervision=int(arch.get("deep_supervision", 0)))
        net.load_state_dict(blob["state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise MoodError(f"{path}: segmenter model file is inconsistent ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    model = SegmenterModel(net, meta).eval()
    if device is not None:
        model = model.to(device)
    return model
