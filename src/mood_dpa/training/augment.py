"""SimCLR's random views, batched on the training device with kornia.

Each call draws independent parameters per image from torch's global RNG (seeded by
``lightning.seed_everything``); validation views are drawn inside :func:`seeded_rng` so every
epoch sees the same views.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .config import AugmentConfig


def blur_kernel(crop_size: int, frac: float) -> int:
    """An odd kernel of about ``frac`` of the crop (SimCLR: 10 %), at least 3."""
    k = int(crop_size * frac)
    return max(3, k // 2 * 2 + 1)


class SimCLRAugment(nn.Module):
    """(N, 1, H, W) grey slices in [0, 1] -> (N, 3, c, c) augmented views in [0, 1].

    Random resized crop (scale, aspect ratio) to ``crop_size``, horizontal flip, brightness and
    contrast jitter (applied with probability ``jitter_p``), Gaussian blur (probability ``blur_p``,
    kernel ~10 % of the crop, sigma range). Hue/saturation jitter and random greyscale, no-ops on
    grey data, are left out.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        import kornia.augmentation as K  # heavy: kornia only when augmenting

        c = cfg.crop_size
        k = blur_kernel(c, cfg.blur_kernel_frac)
        self.pipeline = nn.Sequential(
            K.RandomResizedCrop((c, c), scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), p=1.0),
            K.RandomHorizontalFlip(p=cfg.flip_p),
            K.ColorJitter(brightness=cfg.jitter, contrast=cfg.jitter, p=cfg.jitter_p),
            K.RandomGaussianBlur((k, k), sigma=tuple(cfg.blur_sigma), p=cfg.blur_p),
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.pipeline(x.float()).clamp_(0.0, 1.0)


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's RNG (CPU and, when used, the CUDA device) seeded, then restore it."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(seed)
        yield
