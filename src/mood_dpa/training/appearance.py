"""Another scanner for the same anatomy: random global appearance changes of a training image (gamma, contrast,
a smooth bias field, noise, blur), for every learned method.

Why: a detector trained on one scanner's normals learns that scanner's contrast and texture as "normal",
and on a new subject or scanner it fires on the cortex and the borders instead of the lesion (issue 16).
Changing the whole image's appearance teaches it that global appearance is normal. The segmenters apply
it AFTER the anomaly is synthesised: the change is global and the same for the anomaly and its
surroundings, so the target (where the anomaly is) is untouched, bit for bit. The DPA applies it to its
normal slices (the autoencoder's input and the loss's target alike). The background (exactly 0) stays 0.
:class:`TrainingStream` is the seeded generator both draw from, its state kept in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from ..config import StrictModel
from .fields import gaussian_smooth, smooth_noise, uniform


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
    y = x.clamp_min(0).pow(torch.exp(uniform(gen, (b,), -s.gamma, s.gamma, dev)).reshape(shape))
    # elementwise per image (no statistic of the image's own content): the same voxel value changes the same way
    pivot = uniform(gen, (b,), 0.3, 0.7, dev).reshape(shape)
    y = pivot + (y - pivot) * torch.exp(uniform(gen, (b,), -s.contrast, s.contrast, dev)).reshape(shape)
    field = smooth_noise(gen, b, 1, tuple(x.shape[2:]), 3, dev)
    y = y * (1.0 + uniform(gen, (b,), 0.0, s.bias, dev).reshape(shape) * field)
    y = y + torch.randn(x.shape, generator=gen, device=dev) * uniform(gen, (b,), 0.0, s.noise, dev).reshape(shape)
    sigma = uniform(gen, (b,), 0.0, s.blur, dev)
    y = torch.where((sigma > 0.3).reshape(shape), gaussian_smooth(y, sigma.clamp_min(0.3)), y)
    y = torch.where(fg, y.clamp(1e-3, 1.0), torch.zeros_like(y))  # foreground stays foreground, background 0
    return torch.where(on, y, x)


class AppearanceConfig(StrictModel):
    """Another scanner for the same anatomy (:func:`change_appearance`): global changes of a share of the training images."""

    p: float = Field(0.0, ge=0, le=1, description="share of training images whose appearance changes (0: off)")
    gamma: float = Field(0.3, ge=0, description="gamma = exp(U(-gamma, gamma))")
    contrast: float = Field(0.3, ge=0, description="tissue contrast x exp(U(-contrast, contrast)) around a level U(0.3, 0.7)")
    bias: float = Field(0.3, ge=0, description="amplitude of a smooth multiplicative bias field")
    noise: float = Field(0.03, ge=0, description="largest std of added Gaussian noise on the foreground")
    blur: float = Field(1.0, ge=0, description="largest Gaussian blur sigma (voxels)")

    def settings(self) -> AppearanceSettings:
        return AppearanceSettings(**self.model_dump())


class TrainingStream:
    """The training-time random stream of a LightningModule: a ``torch.Generator`` on the training device,
    seeded from the trainer seed and the rank; its state is saved under ``key`` in the checkpoint, so a
    resumed run continues the same stream (a killed ``fit`` resumes to the same model)."""

    def __init__(self, key: str, seed: int) -> None:
        self.key, self.seed = key, int(seed)
        self._gen: torch.Generator | None = None
        self._state: torch.Tensor | None = None

    def get(self, device: torch.device, rank: int = 0) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device)
            self._gen.manual_seed(self.seed * 1_000_003 + int(rank))
            if self._state is not None:
                self._gen.set_state(self._state)
                self._state = None
        return self._gen

    def save(self, checkpoint: dict) -> None:
        if self._gen is not None:
            checkpoint[self.key] = self._gen.get_state()

    def load(self, checkpoint: dict) -> None:
        state = checkpoint.get(self.key)
        self._state = state.cpu() if isinstance(state, torch.Tensor) else None
        self._gen = None
