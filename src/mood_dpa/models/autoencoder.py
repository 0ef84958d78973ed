"""The seed's residual autoencoder ("residual9") and a deeper variant ("residual18").

Building blocks (LReLU = LeakyReLU(0.2); convs with bias and zero padding; no normalisation, no dropout):

* residual block: ``out = x + conv3x3(LReLU(conv3x3(LReLU(x))))``
* down block:     ``out = avgpool2(x) + conv3x3(LReLU(conv3x3(avgpool2(LReLU(x)))))``
* up block:       ``out = up2(x) + conv3x3(LReLU(conv3x3(up2(LReLU(x)))))`` (nearest up-sampling)

The autoencoder works on x in [-1, 1] (the model file maps [0, 1] slices there) and its output is
linear (no tanh). The number of down/up blocks is ``log2(size / 4)`` (5 at 128x128), so the latent is
always ``d x 1 x 1``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MoodError

ARCHS = ("residual9", "residual18")
NEG_SLOPE = 0.2


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(LReLU(conv(LReLU(x))))``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = _conv3(ch, ch)
        self.conv2 = _conv3(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, NEG_SLOPE))
        return x + self.conv2(F.leaky_relu(h, NEG_SLOPE))


class DownBlock(nn.Module):
    """``avgpool2(x) + conv(LReLU(conv(avgpool2(LReLU(x)))))``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = _conv3(ch, ch)
        self.conv2 = _conv3(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(F.leaky_relu(x, NEG_SLOPE), 2)
        h = self.conv2(F.leaky_relu(self.conv1(h), NEG_SLOPE))
        return F.avg_pool2d(x, 2) + h


class UpBlock(nn.Module):
    """``up2(x) + conv(LReLU(conv(up2(LReLU(x)))))`` with nearest-neighbour up-sampling."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = _conv3(ch, ch)
        self.conv2 = _conv3(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.leaky_relu(x, NEG_SLOPE), scale_factor=2, mode="nearest")
        h = self.conv2(F.leaky_relu(self.conv1(h), NEG_SLOPE))
        return F.interpolate(x, scale_factor=2, mode="nearest") + h


def n_stages(size: int) -> int:
    """Number of down (and up) blocks for a square input of ``size``: log2(size / 4)."""
    if size < 32 or size > 256 or size & (size - 1):
        raise MoodError(f"autoencoder input size must be a power of two in 32..256, got {size}")
    return int(math.log2(size // 4))


class Encoder(nn.Module):
    """conv3x3 1->C, residual block(s), ``n`` down blocks (size -> 4), LReLU, conv4x4 C->d => d x 1 x 1."""

    def __init__(self, channels: int, latent: int, size: int, res_per_stage: int = 0) -> None:
        super().__init__()
        n = n_stages(size)
        self.conv_in = nn.Conv2d(1, channels, kernel_size=3, padding=1)
        first = [ResBlock(channels) for _ in range(1 + res_per_stage)]
        blocks: list[nn.Module] = list(first)
        for _ in range(n):
            blocks.append(DownBlock(channels))
            blocks.extend(ResBlock(channels) for _ in range(res_per_stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv2d(channels, latent, kernel_size=4, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(x))
        return self.conv_out(F.leaky_relu(h, NEG_SLOPE))


class Decoder(nn.Module):
    """LReLU, conv4x4 (padding 3) d->C (1x1 -> 4x4), ``n`` up blocks (4 -> size), LReLU, conv3x3 C->1 (linear)."""

    def __init__(self, channels: int, latent: int, size: int, res_per_stage: int = 0) -> None:
        super().__init__()
        n = n_stages(size)
        self.conv_in = nn.Conv2d(latent, channels, kernel_size=4, padding=3)
        blocks: list[nn.Module] = []
        for _ in range(n):
            blocks.append(UpBlock(channels))
            blocks.extend(ResBlock(channels) for _ in range(res_per_stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = _conv3(channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(F.leaky_relu(z, NEG_SLOPE)))
        return self.conv_out(F.leaky_relu(h, NEG_SLOPE))


class ResidualAE(nn.Module):
    """Residual convolutional autoencoder on (N, 1, S, S) inputs in [-1, 1]; linear output.

    * ``residual9``: exactly the seed's network (SEED_SPEC.md): encoder = conv3x3, one residual
      block, ``log2(S/4)`` down blocks, LReLU, conv4x4 -> ``d x 1 x 1``; decoder = LReLU,
      conv4x4 (padding 3), ``log2(S/4)`` up blocks, LReLU, conv3x3 -> 1 channel.
      C=d=128 at 128x128: 2,034,560 encoder + 1,739,265 decoder parameters.
    * ``residual18``: the same network with TWO residual-type blocks per stage: the encoder's
      full-resolution stage has two residual blocks, and every down block (encoder) or up block
      (decoder) is followed by one extra residual block at its output resolution.

    Weights: Kaiming-normal (fan_out, leaky_relu a=0.2), zero bias, drawn from a generator seeded by ``seed``.
    """

    def __init__(
        self,
        arch: Literal["residual9", "residual18"] = "residual9",
        channels: int = 128,
        latent: int = 128,
        size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise MoodError(f"unknown autoencoder architecture {arch!r}; use one of {', '.join(ARCHS)}")
        if channels < 1 or latent < 1:
            raise MoodError(f"autoencoder channels and latent must be >= 1, got {channels}, {latent}")
        extra = 1 if arch == "residual18" else 0
        self.arch, self.channels, self.latent, self.size = arch, channels, latent, size
        self.encoder = Encoder(channels, latent, size, extra)
        self.decoder = Decoder(channels, latent, size, extra)
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(int(seed))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=NEG_SLOPE, mode="fan_out", nonlinearity="leaky_relu", generator=gen)
                nn.init.zeros_(m.bias)

    def config(self) -> dict:
        return {"arch": self.arch, "channels": self.channels, "latent": self.latent, "size": self.size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"autoencoder expects (N,1,{self.size},{self.size}), got {tuple(x.shape)}")
        return self.decoder(self.encoder(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
