"""SimCLR pieces: the NT-Xent loss and the VGG19 + projection-head network of the seed."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones.vgg19 import VGG19Features


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised-temperature cross entropy over 2N views (SimCLR).

    ``z1[k]`` and ``z2[k]`` are the two views of image k. With s(a, b) the cosine similarity, for each
    of the 2N views i with positive p(i): ``l_i = -log(exp(s_ip / t) / sum_{k != i} exp(s_ik / t))``;
    the loss is the mean of l_i over all 2N views.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent expects two (N, D) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLRNet(nn.Module):
    """VGG19 conv stack -> adaptive avg-pool 7x7 -> flatten -> Linear(512*49, 2048) -> ReLU -> Linear(2048, 256).

    (Widths scale with ``width`` for the narrow demo networks.) The conv stack is ``self.vgg``, a
    :class:`VGG19Features` with ``layers=None`` (all 37 modules), whose ``features.N.*`` weights are
    what :func:`mood_dpa.models.backbones.vgg19.save_vgg_features` exports.
    """

    def __init__(self, width: float = 1.0, hidden: int = 2048, out_dim: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.vgg = VGG19Features(layers=None, width=width, seed=seed)
        self.pool = nn.AdaptiveAvgPool2d((7, 7))
        gen = torch.Generator().manual_seed(seed + 1)
        self.head = nn.Sequential(
            nn.Linear(self.vgg.out_channels * 49, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )
        for m in self.head:  # PyTorch's default Linear init, drawn from a seeded generator
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.vgg(x)[0]
        return self.head(torch.flatten(self.pool(h), 1))
