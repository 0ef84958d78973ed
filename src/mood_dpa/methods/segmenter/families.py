"""What a training anomaly does inside its region, one function per family (see the generator's docstring).

Each returns the FULLY anomalous image (the generator blends it in with the region weight) or, for the
deformation, the deformed image itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...training.fields import gaussian_smooth, smooth_noise, uniform
from .shapes import _grid

INTENSITY_OPS = ("offset", "gamma", "noise", "blur", "sharpen")


def _donors(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Another image of the batch for each image (a random non-zero roll); a flipped self when B == 1."""
    b = x.shape[0]
    if b == 1:
        return torch.flip(x, dims=[x.dim() - 1])
    shift = int(torch.randint(1, b, (1,), generator=gen, device=x.device))
    return torch.roll(x, shifts=shift, dims=0)


def _poisson_fill(host: torch.Tensor, donor: torch.Tensor, weight: torch.Tensor, iters: int = 40) -> torch.Tensor:
    """Host-donor difference continued harmonically into the region (Jacobi on a 4x coarser grid)."""
    dim = host.dim() - 2
    pool = F.avg_pool2d if dim == 2 else F.avg_pool3d
    diff = pool(host - donor, 4, ceil_mode=True)
    inside = pool(weight, 4, ceil_mode=True) > 0
    sol = torch.where(inside, torch.zeros_like(diff), diff)
    kernel = 3
    for _ in range(iters):
        avg = pool(F.pad(sol, [1] * (2 * dim), mode="replicate"), kernel, stride=1)
        sol = torch.where(inside, avg, diff)
    mode = "bilinear" if dim == 2 else "trilinear"
    return F.interpolate(sol, size=host.shape[2:], mode=mode, align_corners=False)


def _intensity(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random intensity/texture change per image (the fully anomalous image, before blending)."""
    b, dim, dev = x.shape[0], x.dim() - 2, x.device
    op = torch.randint(0, len(INTENSITY_OPS), (b,), generator=gen, device=dev).reshape(b, *[1] * (dim + 1))
    sign = torch.where(torch.rand((b,), generator=gen, device=dev) < 0.5, -1.0, 1.0)
    shape = (b, *[1] * (dim + 1))
    offset = x + (sign * uniform(gen, (b,), 0.05, 0.4, dev)).reshape(shape)
    gamma = x.clamp_min(0).pow(torch.exp(sign * uniform(gen, (b,), 0.3, 1.0, dev)).reshape(shape))
    grain = smooth_noise(gen, b, 1, tuple(x.shape[2:]), max(4, x.shape[-1] // 2), dev)
    noise = x + grain * uniform(gen, (b,), 0.03, 0.25, dev).reshape(shape)
    blurred = gaussian_smooth(x, uniform(gen, (b,), 0.8, 2.5, dev))
    sharpen = x + (x - blurred) * uniform(gen, (b,), 1.0, 3.0, dev).reshape(shape)
    out = offset
    for i, alt in enumerate((offset, gamma, noise, blurred, sharpen)):
        out = torch.where(op == i, alt, out)
    return out


def _sample_at(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``x`` read at voxel coordinates ``src`` (B, dim, *spatial), linear interpolation, border values outside."""
    dim = x.dim() - 2
    sizes = torch.tensor(x.shape[2:], dtype=src.dtype, device=src.device).reshape(1, dim, *[1] * dim)
    norm = src / (sizes - 1).clamp_min(1) * 2 - 1  # align_corners=True: -1 and 1 are the first and last voxel
    grid = norm.flip(1).movedim(1, -1)  # grid_sample wants (x, y[, z]) = the last axis first, channels last
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def deform(x: torch.Tensor, w: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial deformation inside the region (MOOD's "sink" / "source"): around the region's weighted centre,
    content is pulled in or pushed out by ``strength`` x the region weight. Returns (deformed image, strength)."""
    b, dim, dev = x.shape[0], x.dim() - 2, x.device
    ones = [1] * dim
    grid = _grid(tuple(x.shape[2:]), dev)[None]  # (1, dim, *sp)
    mass = w.sum(tuple(range(2, dim + 2))).clamp_min(1e-6)  # (B, 1)
    centre = (grid * w).sum(tuple(range(2, dim + 2))) / mass  # (B, dim)
    sign = torch.where(torch.rand((b,), generator=gen, device=dev) < 0.5, -1.0, 1.0)
    strength = uniform(gen, (b,), 0.3, 0.8, dev)
    scale = 1.0 + (sign * strength).reshape(b, 1, *ones) * w  # > 1: a sink (content drawn from further out)
    src = centre.reshape(b, dim, *ones) + (grid - centre.reshape(b, dim, *ones)) * scale
    return _sample_at(x, src), strength.reshape(b, 1, *ones)


def lesion(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A smooth hypo- or hyper-intense lesion (DAG-like): a level 0.15-0.45 below or above the image's mean
    foreground intensity, with a faint smooth texture; blended in with the region's soft edges."""
    b, dim, dev = x.shape[0], x.dim() - 2, x.device
    shape = (b, *[1] * (dim + 1))
    fg = (x > 0).float()
    mean = (x * fg).sum(tuple(range(1, dim + 2))) / fg.sum(tuple(range(1, dim + 2))).clamp_min(1.0)
    sign = torch.where(torch.rand((b,), generator=gen, device=dev) < 0.5, -1.0, 1.0)
    level = (mean + sign * uniform(gen, (b,), 0.15, 0.45, dev)).clamp(0.02, 1.0).reshape(shape)
    texture = smooth_noise(gen, b, 1, tuple(x.shape[2:]), max(4, x.shape[-1] // 4), dev) * uniform(gen, (b,), 0.0, 0.06, dev).reshape(shape)
    return (level + texture).expand_as(x)
