"""Relative perceptual L1 (the DPA loss and anomaly map) and the plain pixel-L1 reference.

With F_l the activations of VGG19 layer l (frozen; gradients flow through it to the reconstruction),
x the real slice and y its reconstruction, both in [0, 1]:

* training loss per sample:  ``L(x, y) = sum_l w_l * mean_{c,i,j} |F_l(x) - F_l(y)| / sg(mean_{c,i,j} |F_l(x)|)``,
  averaged over the batch (sg = stop-gradient: the denominator comes from the real slice only and
  carries no gradient). With one layer and w = 1 this is exactly the seed's loss.
* pixel-wise map: numerator ``N_l(i,j) = mean_c |F_l(x) - F_l(y)|`` up-sampled bilinearly to the
  slice size, denominator ``D_l = mean_{c,i,j} |F_l(x)|`` per slice; the map is
  ``sum_l w_l * N_l / D_l`` where D_l is either the slice's own (per-slice normaliser) or one value
  shared by a stack of slices, e.g. the mean over all slices of a volume (the seed's per-volume
  normaliser). :func:`combine_maps` does that division.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MoodError


EPS = 1e-8


def combine_maps(numerators: torch.Tensor, denominators: torch.Tensor, weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``sum_l w_l * numerators[:, l] / denominators[..., l]`` -> (N, 1, S, S).

    ``numerators``: (N, L, S, S). ``denominators``: (N, L) for a per-slice normaliser, or (L,) / (1, L)
    for one normaliser shared by the whole stack (e.g. ``denominators.mean(0)`` over a volume's slices).
    """
    if numerators.dim() != 4:
        raise ValueError(f"numerators must be (N,L,S,S), got {tuple(numerators.shape)}")
    n_layers = numerators.shape[1]
    den = denominators.reshape(-1, n_layers).to(numerators.dtype).clamp_min(EPS)
    w = torch.as_tensor(weights, dtype=numerators.dtype, device=numerators.device).reshape(1, n_layers)
    scale = (w / den)[:, :, None, None]
    return (numerators * scale).sum(dim=1, keepdim=True)


class RelativePerceptualL1(nn.Module):
    """Relative perceptual L1 on one or several layers of a frozen backbone (:mod:`mood_dpa.models.backbones`).

    ``weights`` (one per layer of ``features.layers``, default all 1) weight the per-layer terms.
    The VGG is frozen here (``requires_grad=False``, eval mode) and stays frozen in ``train()``.
    """

    kind = "perceptual"

    def __init__(self, features: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not features.layers:
            raise MoodError("the perceptual loss needs at least one VGG layer")
        weights = list(weights) if weights is not None else [1.0] * len(features.layers)
        if len(weights) != len(features.layers):
            raise MoodError(f"{len(features.layers)} VGG layer(s) but {len(weights)} weight(s)")
        self.features = features.freeze()
        self.layers = tuple(features.layers)
        self.weights = tuple(float(w) for w in weights)

    def train(self, mode: bool = True) -> "RelativePerceptualL1":
        super().train(mode)
        self.features.eval()
        return self

    def _feats(self, x01: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x01)

    def terms(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-layer relative distances (N, L) (float32; denominators detached)."""
        with torch.no_grad():
            fx = [f.detach() for f in self._feats(x01)]
        fy = self._feats(y01)
        out = []
        for a, b in zip(fx, fy):
            a32, b32 = a.float(), b.float()
            num = (a32 - b32).abs().flatten(1).mean(1)
            den = a32.abs().flatten(1).mean(1).clamp_min(EPS)
            out.append(num / den)
        return torch.stack(out, dim=1)

    def per_sample(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        """Weighted per-sample loss (N,)."""
        t = self.terms(x01, y01)
        w = torch.tensor(self.weights, dtype=t.dtype, device=t.device)
        return (t * w).sum(1)

    def forward(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        """The training loss: the batch mean of :meth:`per_sample`."""
        return self.per_sample(x01, y01).mean()

    def maps(self, x01: torch.Tensor, y01: torch.Tensor, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Numerator maps (N, L, S, S) at ``size`` (default: the input's) and denominators (N, L)."""
        size = size or x01.shape[-1]
        nums, dens = [], []
        for a, b in zip(self._feats(x01), self._feats(y01)):
            a32, b32 = a.float(), b.float()
            m = (a32 - b32).abs().mean(1, keepdim=True)
            if m.shape[-1] != size or m.shape[-2] != size:
                m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
            nums.append(m)
            dens.append(a32.abs().flatten(1).mean(1))
        return torch.cat(nums, dim=1), torch.stack(dens, dim=1)


class PixelL1(nn.Module):
    """The plain-L1 reference loss: ``mean |x - y|`` per sample on [0, 1] images; map ``|x - y|``, denominator 1."""

    kind = "l1"
    layers: tuple[str, ...] = ()
    weights: tuple[float, ...] = (1.0,)

    def per_sample(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        return (x01.float() - y01.float()).abs().flatten(1).mean(1)

    def forward(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        return self.per_sample(x01, y01).mean()

    def maps(self, x01: torch.Tensor, y01: torch.Tensor, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        m = (x01.float() - y01.float()).abs()
        size = size or x01.shape[-1]
        if m.shape[-1] != size:
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
        return m, torch.ones(m.shape[0], 1, device=m.device, dtype=m.dtype)
