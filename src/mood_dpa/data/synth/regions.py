"""Where an anomaly goes: spheres, rotated ellipsoids or random smooth blobs, with soft or hard edges.

A :class:`Region` lives in a bounding box of the volume (clipped at the border, never crashing) and
carries a weight in [0, 1] per box voxel (1 inside, 0 outside, a smooth ramp on a soft edge) plus the
normalised ellipsoid distance ``rho`` (0 at the centre, 1 on the ellipsoid surface) that the radial
deformations use. Coordinates are array indices in axis order (i, j, k).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ...errors import MoodError

SHAPES = ("sphere", "ellipsoid", "smooth")
#: MOOD_PROTOCOL.md: radius about 5-13 % of the side.
RADIUS_FRACTION = (0.05, 0.13)
#: Width of a soft edge, as a fraction of the normalised radius.
SOFT_WIDTH = 0.35


@dataclass
class Region:
    """An anomaly region: box slices into the volume, per-voxel weight and normalised distance."""

    slices: tuple[slice, slice, slice]
    weight: np.ndarray  # float32 in [0,1], shape of the box
    rho: np.ndarray  # float32, normalised ellipsoid distance in the box
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rotation: np.ndarray  # 3x3, columns are the ellipsoid axes in array coordinates
    shape: str = "ellipsoid"
    soft: bool = False
    info: dict = field(default_factory=dict)

    def mask(self, volume_shape: tuple[int, ...]) -> np.ndarray:
        """Full-size float32 weight volume (mostly for tests and pictures)."""
        out = np.zeros(volume_shape, np.float32)
        out[self.slices] = self.weight
        return out

    def describe(self) -> dict:
        return {
            "shape": self.shape,
            "soft": self.soft,
            "centre": [round(float(c), 2) for c in self.centre],
            "radii": [round(float(r), 2) for r in self.radii],
        }


def random_rotation(rng: np.random.Generator, max_degrees: float = 180.0) -> np.ndarray:
    """A rotation matrix from three Euler angles (x, y, z), each uniform in [0, max_degrees]."""
    a, b, c = np.deg2rad(rng.uniform(0.0, max_degrees, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def make_region(
    volume_shape: tuple[int, int, int],
    centre,
    radii,
    *,
    rotation: np.ndarray | None = None,
    shape: str = "ellipsoid",
    soft: bool = False,
    rng: np.random.Generator | None = None,
    roughness: float = 0.35,
) -> Region:
    """Rasterise a region (clipped at the volume border).

    ``shape="smooth"`` perturbs the ellipsoid distance with low-frequency noise drawn from ``rng``
    (a random smooth blob that stays inside the ellipsoid's radius x (1 + roughness)).
    Raises MoodError when the region lies entirely outside the volume.
    """
    if shape not in SHAPES:
        raise MoodError(f"unknown region shape {shape!r}; expected one of {', '.join(SHAPES)}")
    centre = np.asarray(centre, dtype=np.float64)
    radii = np.maximum(np.asarray(radii, dtype=np.float64), 1.0)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    grow = 1.0 + (roughness if shape == "smooth" else 0.0)
    reach = radii.max() * grow + 1.0
    lo = [max(0, int(np.floor(c - reach))) for c in centre]
    hi = [min(n, int(np.ceil(c + reach)) + 1) for c, n in zip(centre, volume_shape)]
    if any(h <= low for low, h in zip(lo, hi)):
        raise MoodError(f"region centred at {centre.tolist()} lies outside the volume {volume_shape}")
    slices = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = np.meshgrid(*[np.arange(a, b, dtype=np.float64) - c for a, b, c in zip(lo, hi, centre)], indexing="ij")
    offsets = np.stack(grids, axis=-1)  # (..., 3)
    local = offsets @ rot  # coordinates along the ellipsoid's axes
    rho = np.sqrt(np.sum((local / radii) ** 2, axis=-1))
    dist = rho
    if shape == "smooth":
        if rng is None:
            raise ValueError("a smooth region needs rng")
        noise = rng.standard_normal(rho.shape)
        noise = ndimage.gaussian_filter(noise, sigma=max(1.0, radii.mean() / 2.5), mode="wrap")
        noise /= np.abs(noise).max() + 1e-12
        dist = rho / (1.0 + roughness * noise)
    if soft:
        weight = 1.0 - _smoothstep((dist - (1.0 - SOFT_WIDTH)) / SOFT_WIDTH)
    else:
        weight = (dist <= 1.0).astype(np.float64)
    return Region(
        slices=slices,
        weight=weight.astype(np.float32),
        rho=rho.astype(np.float32),
        centre=tuple(float(c) for c in centre),
        radii=tuple(float(r) for r in radii),
        rotation=rot,
        shape=shape,
        soft=bool(soft),
    )


def foreground_centres(data: np.ndarray, threshold: float = 0.0, central: float = 0.15, step: int = 1) -> np.ndarray:
    """Candidate centres: foreground voxels (> threshold) in the central part of the volume.

    ``central`` trims that fraction of each side on both ends; falls back to the whole foreground when
    the central part has none. Returns an (n, 3) int array (possibly empty).
    """
    fg = data[::step, ::step, ::step] > threshold
    idx = np.argwhere(fg) * step
    if idx.size == 0:
        return idx
    shape = np.asarray(data.shape)
    keep = np.all((idx >= central * shape) & (idx < (1.0 - central) * shape), axis=1)
    return idx[keep] if keep.any() else idx


def sample_region(
    data: np.ndarray,
    rng: np.random.Generator,
    *,
    shape: str | None = None,
    soft: bool | None = None,
    radius_fraction: tuple[float, float] = RADIUS_FRACTION,
    min_foreground: float = 0.5,
    threshold: float = 0.0,
    candidates: np.ndarray | None = None,
    max_tries: int = 50,
) -> Region:
    """Draw a region mostly in the foreground of ``data`` (sized per MOOD_PROTOCOL.md).

    ``shape`` (sphere / ellipsoid / smooth) and ``soft`` are drawn at random when None. The radius is
    ``radius_fraction`` x the smallest side (at least 2 voxels). A draw whose weighted foreground
    fraction is below ``min_foreground`` is rejected and redrawn; after ``max_tries`` the best draw
    that touches the foreground is kept. Raises MoodError when the volume has no foreground.
    """
    if candidates is None:
        candidates = foreground_centres(data, threshold, step=2 if min(data.shape) >= 128 else 1)
    if len(candidates) == 0:
        raise MoodError("volume has no foreground voxels to place an anomaly in")
    side = float(min(data.shape))
    best: tuple[float, Region] | None = None
    for _ in range(max_tries):
        sh = shape if shape is not None else SHAPES[int(rng.integers(len(SHAPES)))]
        sf = bool(rng.integers(2)) if soft is None else bool(soft)
        centre = candidates[int(rng.integers(len(candidates)))] + rng.uniform(-0.5, 0.5, size=3)
        if sh == "sphere":
            radii = np.full(3, rng.uniform(*radius_fraction) * side)
            rot = np.eye(3)
        else:
            radii = rng.uniform(*radius_fraction, size=3) * side
            rot = random_rotation(rng)
        radii = np.maximum(radii, 2.0)
        region = make_region(data.shape, centre, radii, rotation=rot, shape=sh, soft=sf, rng=rng)
        w = region.weight
        total = float(w.sum())
        if total <= 0:
            continue
        frac = float((w * (data[region.slices] > threshold)).sum() / total)
        region.info["foreground_fraction"] = round(frac, 3)
        if frac >= min_foreground:
            return region
        if frac > 0 and (best is None or frac > best[0]):
            best = (frac, region)
    if best is None:
        raise MoodError("could not place an anomaly region in the foreground")
    return best[1]


def seed_ellipsoid_region(data: np.ndarray, rng: np.random.Generator, threshold: float = 0.0, max_tries: int = 50) -> Region:
    """The seed's ellipsoid placement (SEED_SPEC.md), fixed.

    Foreground extent per axis gives centre_a and half-extent; r = mean half-extent. Centre ~ N(centre_a,
    r/3) per axis (axis order kept), radii max(5, N(r/16, r/16)) voxels, rotation from Euler angles in
    0-90 degrees, hard edge; clipped at the border; a region fully in the background is redrawn.
    """
    fg = data > threshold
    if not fg.any():
        raise MoodError("volume has no foreground voxels to place an anomaly in")
    centre_a, half = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(fg.any(axis=other))
        centre_a.append((idx[0] + idx[-1]) / 2.0)
        half.append((idx[-1] - idx[0] + 1) / 2.0)
    r = float(np.mean(half))
    centre_a = np.asarray(centre_a)
    shape = np.asarray(data.shape)
    region = None
    for _ in range(max_tries):
        centre = np.clip(rng.normal(centre_a, r / 3.0), 0, shape - 1)
        radii = np.maximum(5.0, rng.normal(r / 16.0, r / 16.0, size=3))
        rot = random_rotation(rng, 90.0)
        region = make_region(data.shape, centre, radii, rotation=rot, shape="ellipsoid", soft=False)
        if (region.weight * fg[region.slices]).sum() > 0:
            return region
    raise MoodError("could not place a seed ellipsoid in the foreground")
