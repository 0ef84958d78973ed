"""The segmenter's TRAINING-time anomaly generator: batched torch on the training device, seeded.

This is deliberately separate code from :mod:`mood_dpa.data.synth` (the evaluation kinds) and shares no
shape or blending routine with it, so an evaluation kind is only "seen" when its *family* is below
(foreign patch -> ``patch``; intensity offset -> ``uniform``; local noise -> ``noise``), never because the
same code drew it.

Given normal images ``x`` in [0, 1] of shape (B, 1, H, W) or (B, 1, D, H, W), :meth:`AnomalyGenerator.__call__`
returns ``(x_anomalous, target)``:

* **Regions**: per image a union of 1..``max_components`` components; each is either a randomly rotated
  ellipsoid whose coordinates are warped by a smooth random displacement field (a "deformed ellipsoid"),
  or thresholded smooth noise inside a ball. Edges are smoothed by a smoothstep ramp of random width, so
  the weight ``w`` is in [0, 1] and exactly 0 outside the region. Centres are drawn on the foreground
  (x > 0), and with probability ``foreground_p`` the weight is cut to the foreground.
* **Families** (one per anomalous image): foreign-patch interpolation (FPI: the same place of ANOTHER
  image of the batch blended in with alpha ~ U(0, 1)); Poisson-style gradient-domain blending (the donor's
  texture with the host's low frequencies: a Laplace equation for the host-donor difference solved by
  Jacobi iterations on a 4x coarser grid, then upsampled: cheap, batched, approximate); intensity/texture
  changes (offset, gamma, local noise, blur, sharpen).
* **Target: the per-voxel blend factor** ``w * strength``, set to 0 wherever the image did not change by
  more than ``eps``. We regress the blend factor (FPI-style, read by BCE-with-logits as a soft label)
  rather than a binary mask because a faint blend (alpha 0.05, or two similar tissues) is nearly invisible:
  a binary mask would demand a confident answer the image cannot support and teach the net to fire on
  normal texture; the soft factor ranks voxels by how anomalous they look, which is what pixel AP scores.
  The gate keeps the label honest: ``target > 0`` exactly where ``|x' - x| > eps``.
* A fraction ``normal_p`` of the images stays unchanged (target all zero).

Everything runs in float32 outside autocast; only ``generator`` (a ``torch.Generator`` on x's device)
draws random numbers, so the same seed gives the same output on the same device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Per family, the evaluation kinds (mood_dpa.data.synth) of the same family: a model trained with the
#: family switched on has "seen" them (:func:`mood_dpa.methods.segmenter.recipe.seen_kinds`).
FAMILY_KINDS = {"fpi": ("patch",), "poisson": ("patch",), "intensity": ("uniform", "noise")}
INTENSITY_OPS = ("offset", "gamma", "noise", "blur", "sharpen")


@dataclass(frozen=True)
class AnomalySettings:
    """What the generator draws (see :class:`~.config.AnomalyConfig` for the documented fields)."""

    normal_p: float = 0.2
    fpi: float = 0.45
    poisson: float = 0.2
    intensity: float = 0.35
    radius: tuple[float, float] = (0.04, 0.25)  # component radius as a fraction of the image side
    max_components: int = 3
    noise_shape_p: float = 0.4
    foreground_p: float = 0.9
    eps: float = 1e-3


# ----------------------------------------------------------------------------------------- helpers


def _u(gen: torch.Generator, shape, lo: float, hi: float, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device) * (hi - lo) + lo


def _smooth_noise(gen: torch.Generator, b: int, c: int, spatial: tuple[int, ...], cells: int, device) -> torch.Tensor:
    """Low-frequency noise of roughly unit scale: a coarse normal grid upsampled (bi/trilinear)."""
    coarse = torch.randn((b, c, *([cells] * len(spatial))), generator=gen, device=device)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    return F.interpolate(coarse, size=spatial, mode=mode, align_corners=True)


def _ramp(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rotations(gen: torch.Generator, n: int, dim: int, device) -> torch.Tensor:
    """n random rotation matrices (dim x dim) from the QR of a Gaussian matrix (sign-fixed)."""
    a = torch.randn((n, dim, dim), generator=gen, device=device)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


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


# ------------------------------------------------------------------------------------------ shapes


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
    """Soft region weights (B, 1, *spatial) in [0, 1]: unions of deformed ellipsoids / noise blobs."""
    b, dim, spatial, dev = x.shape[0], x.dim() - 2, tuple(x.shape[2:]), x.device
    side = float(min(spatial))
    k = s.max_components
    grid = _grid(spatial, dev)  # (dim, *sp)
    centres = _pick_centres(x, gen, k)  # (B, k, dim)
    active = torch.arange(k, device=dev)[None] < torch.randint(1, k + 1, (b, 1), generator=gen, device=dev)
    radii = _u(gen, (b, k, dim), s.radius[0], s.radius[1], dev) * side
    radii = radii * _u(gen, (b, k, 1), 0.6, 1.0, dev).pow(torch.arange(dim, device=dev).float() / max(dim - 1, 1))
    rot = _rotations(gen, b * k, dim, dev).reshape(b, k, dim, dim)
    # a smooth displacement field per image (voxels), amplitude up to ~1/3 of the mean radius
    warp = _smooth_noise(gen, b, dim, spatial, 4, dev) * (radii.mean((1, 2)) * _u(gen, (b,), 0.0, 0.35, dev)).reshape(b, 1, *[1] * dim)
    pts = grid[None] + warp  # (B, dim, *sp)
    edge = _u(gen, (b, k), 0.05, 0.6, dev)  # ramp width as a fraction of the radius (0.05: nearly hard)
    noisy = torch.rand((b, k), generator=gen, device=dev) < s.noise_shape_p
    thresh = _u(gen, (b, k), -0.3, 0.5, dev)
    weight = torch.zeros((b, *spatial), device=dev)
    flat_pts = pts.reshape(b, dim, -1)  # (B, dim, N)
    for j in range(k):
        off = flat_pts - centres[:, j, :, None]  # (B, dim, N)
        local = torch.einsum("bdn,bde->ben", off, rot[:, j])  # along the component's axes
        rho = torch.sqrt(((local / radii[:, j, :, None]) ** 2).sum(1)).reshape(b, *spatial)
        ell = 1.0 - rho  # > 0 inside the ellipsoid
        n = _smooth_noise(gen, b, 1, spatial, max(3, int(round(side / float(radii[:, j].mean().clamp_min(1.0)) * 1.5))), dev)[:, 0]
        n = n / n.flatten(1).abs().amax(1).clamp_min(1e-6).reshape(b, *[1] * dim)
        blob = torch.minimum(n - thresh[:, j].reshape(b, *[1] * dim), 1.2 - rho)  # noise above a level, in a ball
        level = torch.where(noisy[:, j].reshape(b, *[1] * dim), blob, ell)
        w = _ramp(level / edge[:, j].reshape(b, *[1] * dim))
        w = torch.where(active[:, j].reshape(b, *[1] * dim), w, torch.zeros_like(w))
        weight = torch.maximum(weight, w)
    return weight[:, None]


# ------------------------------------------------------------------------------------------ families


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
    offset = x + (sign * _u(gen, (b,), 0.05, 0.4, dev)).reshape(shape)
    gamma = x.clamp_min(0).pow(torch.exp(sign * _u(gen, (b,), 0.3, 1.0, dev)).reshape(shape))
    grain = _smooth_noise(gen, b, 1, tuple(x.shape[2:]), max(4, x.shape[-1] // 2), dev)
    noise = x + grain * _u(gen, (b,), 0.03, 0.25, dev).reshape(shape)
    blurred = gaussian_smooth(x, _u(gen, (b,), 0.8, 2.5, dev))
    sharpen = x + (x - blurred) * _u(gen, (b,), 1.0, 3.0, dev).reshape(shape)
    out = offset
    for i, alt in enumerate((offset, gamma, noise, blurred, sharpen)):
        out = torch.where(op == i, alt, out)
    return out


class AnomalyGenerator:
    """Callable ``(x, generator) -> (x_anomalous, blend_factor_target)``; see the module docstring."""

    def __init__(self, settings: AnomalySettings | None = None) -> None:
        self.s = settings or AnomalySettings()
        p = torch.tensor([self.s.fpi, self.s.poisson, self.s.intensity], dtype=torch.float64)
        if not (p >= 0).all() or float(p.sum()) <= 0:
            raise ValueError("family probabilities must be >= 0 and not all 0")
        self.family_p = (p / p.sum()).float()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() not in (4, 5) or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) or (B, 1, D, H, W), got {tuple(x.shape)}")
        dev_type = x.device.type
        with torch.autocast(device_type=dev_type, enabled=False):
            return self._make(x.float(), generator)

    def _make(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s, b, dim, dev = self.s, x.shape[0], x.dim() - 2, x.device
        shape = (b, *[1] * (dim + 1))
        w = region_weights(x, gen, s)
        restrict = (torch.rand((b,), generator=gen, device=dev) < s.foreground_p).reshape(shape)
        w = torch.where(restrict, w * (x > 0).float(), w)
        family = torch.multinomial(self.family_p.to(dev).expand(b, -1), 1, generator=gen).reshape(shape)
        normal = (torch.rand((b,), generator=gen, device=dev) < s.normal_p).reshape(shape)
        donor = _donors(x, gen)
        alpha = torch.rand((b,), generator=gen, device=dev).reshape(shape)  # FPI: U(0, 1)
        strength = _u(gen, (b,), 0.5, 1.0, dev).reshape(shape)
        poisson = donor + _poisson_fill(x, donor, w)
        anomalous = torch.where(family == 0, donor, torch.where(family == 1, poisson, _intensity(x, gen)))
        factor = torch.where(family == 0, alpha, strength) * w
        factor = torch.where(normal, torch.zeros_like(factor), factor)
        out = (x + factor * (anomalous - x)).clamp(0.0, 1.0)
        changed = (out - x).abs() > s.eps
        out = torch.where(changed, out, x)  # sub-eps changes are undone: unchanged voxels are bit-identical
        target = torch.where(changed, factor, torch.zeros_like(factor))
        return out, target
