"""Where a training anomaly goes: soft region weights in [0, 1] (unions and differences of deformed ellipsoids,
thresholded smooth noise, thin bent tubes) and the small rotation and grid helpers the families share."""

from __future__ import annotations

import torch

from ...training.fields import smooth_noise, uniform
from .settings import AnomalySettings


def _ramp(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rotations(gen: torch.Generator, n: int, dim: int, device) -> torch.Tensor:
    """n random rotation matrices (dim x dim) from the QR of a Gaussian matrix (sign-fixed)."""
    a = torch.randn((n, dim, dim), generator=gen, device=device)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


def _grid(spatial: tuple[int, ...], device) -> torch.Tensor:
    """Voxel coordinates, shape (dim, *spatial), float32."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _pick_centres(x: torch.Tensor, gen: torch.Generator, k: int) -> torch.Tensor:
    """(B, k, dim) voxel centres drawn uniformly from each image's foreground (anywhere when empty)."""
    b = x.shape[0]
    spatial = x.shape[2:]
    fg = (x[:, 0] > 0).reshape(b, -1).float()
    fg = torch.where(fg.sum(1, keepdim=True) > 0, fg, torch.ones_like(fg))
    flat = torch.multinomial(fg, k, replacement=True, generator=gen)  # (B, k)
    coords = []
    for n in reversed(spatial):
        coords.append(flat % n)
        flat = torch.div(flat, n, rounding_mode="floor")
    return torch.stack(coords[::-1], dim=-1).float()


def region_weights(x: torch.Tensor, gen: torch.Generator, s: AnomalySettings) -> torch.Tensor:
    """Soft region weights (B, 1, *spatial) in [0, 1]: a union of 1..``max_components`` components (each a
    deformed ellipsoid, thresholded smooth noise in a ball (``noise_shape_p``), or a thin bent tube
    (``tube_p``)), minus, with probability ``difference_p``, another deformed ellipsoid near the first
    component (a crescent or a ring: shapes no union of blobs makes)."""
    b, dim, spatial, dev = x.shape[0], x.dim() - 2, tuple(x.shape[2:]), x.device
    side = float(min(spatial))
    k = s.max_components
    grid = _grid(spatial, dev)  # (dim, *sp)
    centres = _pick_centres(x, gen, k)  # (B, k, dim)
    active = torch.arange(k, device=dev)[None] < torch.randint(1, k + 1, (b, 1), generator=gen, device=dev)
    radii = uniform(gen, (b, k, dim), s.radius[0], s.radius[1], dev) * side
    radii = radii * uniform(gen, (b, k, 1), 0.6, 1.0, dev).pow(torch.arange(dim, device=dev).float() / max(dim - 1, 1))
    # tubes: one long axis (up to twice the largest radius) and thin cross-sections (drawn only when on:
    # with tube_p = difference_p = 0 the stream, and so every region, is the same as before they existed)
    tube = torch.zeros((b, k), dtype=torch.bool, device=dev)
    if s.tube_p > 0:
        tube = torch.rand((b, k), generator=gen, device=dev) < s.tube_p
        thin = uniform(gen, (b, k, 1), 0.15, 0.3, dev) * radii[..., :1]
        tube_radii = torch.cat([radii[..., :1] * 2.0, thin.expand(b, k, dim - 1)], dim=-1)
        radii = torch.where(tube[..., None], tube_radii, radii)
    rot = _rotations(gen, b * k, dim, dev).reshape(b, k, dim, dim)
    # a smooth displacement field per image (voxels), amplitude up to ~1/3 of the mean radius (tubes bend with it)
    warp = smooth_noise(gen, b, dim, spatial, 4, dev) * (radii.mean((1, 2)) * uniform(gen, (b,), 0.0, 0.35, dev)).reshape(b, 1, *[1] * dim)
    pts = grid[None] + warp  # (B, dim, *sp)
    edge = uniform(gen, (b, k), 0.05, 0.6, dev)  # ramp width as a fraction of the radius (0.05: nearly hard)
    noisy = (torch.rand((b, k), generator=gen, device=dev) < s.noise_shape_p) & ~tube
    thresh = uniform(gen, (b, k), -0.3, 0.5, dev)
    weight = torch.zeros((b, *spatial), device=dev)
    flat_pts = pts.reshape(b, dim, -1)  # (B, dim, N)
    ones = [1] * dim

    def ellipsoid_level(centre, axes, rotation):
        local = torch.einsum("bdn,bde->ben", flat_pts - centre[:, :, None], rotation)  # along the component's axes
        rho = torch.sqrt(((local / axes[:, :, None]) ** 2).sum(1)).reshape(b, *spatial)
        return rho

    for j in range(k):
        rho = ellipsoid_level(centres[:, j], radii[:, j], rot[:, j])
        ell = 1.0 - rho  # > 0 inside the ellipsoid
        n = smooth_noise(gen, b, 1, spatial, max(3, int(round(side / float(radii[:, j].mean().clamp_min(1.0)) * 1.5))), dev)[:, 0]
        n = n / n.flatten(1).abs().amax(1).clamp_min(1e-6).reshape(b, *ones)
        blob = torch.minimum(n - thresh[:, j].reshape(b, *ones), 1.2 - rho)  # noise above a level, in a ball
        level = torch.where(noisy[:, j].reshape(b, *ones), blob, ell)
        w = _ramp(level / edge[:, j].reshape(b, *ones))
        w = torch.where(active[:, j].reshape(b, *ones), w, torch.zeros_like(w))
        weight = torch.maximum(weight, w)
    if s.difference_p <= 0:
        return weight[:, None]
    # differences: an ellipsoid of 0.5-1x the first component's size, its centre moved by up to one radius
    cut = torch.rand((b,), generator=gen, device=dev) < s.difference_p
    cut_radii = radii[:, 0] * uniform(gen, (b, 1), 0.5, 1.0, dev)
    cut_centre = centres[:, 0] + (torch.rand((b, dim), generator=gen, device=dev) * 2 - 1) * radii[:, 0]
    hole = _ramp((1.0 - ellipsoid_level(cut_centre, cut_radii, _rotations(gen, b, dim, dev))) / 0.1)
    weight = torch.where(cut.reshape(b, *ones), (weight - hole).clamp_min(0.0), weight)
    return weight[:, None]
