"""Another scanner for the same anatomy: random global appearance changes of a training image (gamma, contrast,
a smooth bias field, noise, blur), applied AFTER the anomaly is synthesised.

Why: a segmenter trained on one scanner's normals learns that scanner's contrast and texture as "normal",
and on a new subject or scanner it fires on the cortex and the borders instead of the lesion (issue 16).
Changing the whole image's appearance teaches it that global appearance is normal, while only the
synthesised local change is the anomaly. Applied after synthesis, the change is global and the same for
the anomaly and its surroundings: the target (where the anomaly is) is untouched, bit for bit. The
background (exactly 0) stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .shapes import _smooth_noise, _u, gaussian_smooth


@dataclass(frozen=True)
class AppearanceSettings:
    """``p``: share of images changed; each change is drawn per image within the given spread (0: off)."""

    p: float = 0.0
    gamma: float = 0.0  # gamma = exp(U(-gamma, gamma))
    contrast: float = 0.0  # tissue contrast x exp(U(-contrast, contrast)) around a level U(0.3, 0.7)
    bias: float = 0.0  # a smooth multiplicative field 1 + U(0, bias) x (smooth noise)
    noise: float = 0.0  # additive Gaussian noise of std U(0, noise) on the foreground
    blur: float = 0.0  # Gaussian blur of sigma U(0, blur) voxels

    @property
    def active(self) -> bool:
        return self.p > 0 and any((self.gamma, self.contrast, self.bias, self.noise, self.blur))


@torch.no_grad()
def change_appearance(x: torch.Tensor, gen: torch.Generator, s: AppearanceSettings) -> torch.Tensor:
    """``x`` (B, 1, *spatial) in [0, 1] with a new global appearance for a share ``p`` of the images."""
    if not s.active:
        return x
    b, dim, dev = x.shape[0], x.dim() - 2, x.device
    shape = (b, *[1] * (dim + 1))
    fg = x > 0
    on = (torch.rand((b,), generator=gen, device=dev) < s.p).reshape(shape)
    y = x.clamp_min(0).pow(torch.exp(_u(gen, (b,), -s.gamma, s.gamma, dev)).reshape(shape))
    # elementwise per image (no statistic of the image's own content): the same voxel value changes the same way
    pivot = _u(gen, (b,), 0.3, 0.7, dev).reshape(shape)
    y = pivot + (y - pivot) * torch.exp(_u(gen, (b,), -s.contrast, s.contrast, dev)).reshape(shape)
    field = _smooth_noise(gen, b, 1, tuple(x.shape[2:]), 3, dev)
    y = y * (1.0 + _u(gen, (b,), 0.0, s.bias, dev).reshape(shape) * field)
    y = y + torch.randn(x.shape, generator=gen, device=dev) * _u(gen, (b,), 0.0, s.noise, dev).reshape(shape)
    sigma = _u(gen, (b,), 0.0, s.blur, dev)
    y = torch.where((sigma > 0.3).reshape(shape), gaussian_smooth(y, sigma.clamp_min(0.3)), y)
    y = torch.where(fg, y.clamp(1e-3, 1.0), torch.zeros_like(y))  # foreground stays foreground, background 0
    return torch.where(on, y, x)
