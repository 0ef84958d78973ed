"""Seeded random fields and a per-image Gaussian blur, batched on the training device: what the segmenter's
anomaly families and the appearance augmentation of every learned method (:mod:`.appearance`) draw from."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform(gen: torch.Generator, shape, lo: float, hi: float, device) -> torch.Tensor:
    """U(lo, hi) of ``shape``, drawn from ``gen``."""
    return torch.rand(shape, generator=gen, device=device) * (hi - lo) + lo


def smooth_noise(gen: torch.Generator, b: int, c: int, spatial: tuple[int, ...], cells: int, device) -> torch.Tensor:
    """Low-frequency noise of roughly unit scale: a coarse normal grid upsampled (bi/trilinear)."""
    coarse = torch.randn((b, c, *([cells] * len(spatial))), generator=gen, device=device)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    return F.interpolate(coarse, size=spatial, mode=mode, align_corners=True)


def gaussian_smooth(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, *spatial) with one sigma per image (voxels), replicate borders."""
    b, dim = x.shape[0], x.dim() - 2
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b).clamp_min(1e-3)
    radius = int(math.ceil(3.0 * float(sig.max())))
    offs = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (offs[None] / sig[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, K)
    out = x
    conv = F.conv2d if dim == 2 else F.conv3d
    for axis in range(dim):
        shape = [b, 1] + [1] * dim
        shape[2 + axis] = k.shape[1]
        pad = [0, 0] * dim
        pad[2 * (dim - 1 - axis)] = pad[2 * (dim - 1 - axis) + 1] = radius
        y = F.pad(out, pad, mode="replicate")
        # grouped conv: each image has its own kernel
        y = y.reshape(1, b, *y.shape[2:])
        out = conv(y, k.reshape(shape), groups=b).reshape(out.shape)
    return out
