"""One small function per synthetic anomaly kind.

Every kind has the signature ``fn(data, region, rng, **options) -> (out, params)``: ``data`` is a
float32 volume in [0, 1] (not modified), ``region`` a :class:`~.regions.Region`, ``rng`` a numpy
Generator (the only source of randomness); ``out`` is a new float32 volume in [0, 1] that differs
from ``data`` only inside the region's box, and ``params`` a JSON-ready dict of what was drawn.
Inside the region the anomaly is blended with the region weight: ``out = x + w * (anomalous - x)``.

The pixel label is :func:`changed_mask`: the voxels whose value actually changed by more than
``min_change`` (so a deformation that moves nothing marks nothing).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from ...errors import MoodError
from .regions import Region

#: A change smaller than this (on the [0, 1] intensity range) is not an anomaly voxel.
MIN_CHANGE = 0.02

KindFn = Callable[..., "tuple[np.ndarray, dict]"]


def changed_mask(before: np.ndarray, after: np.ndarray, min_change: float = MIN_CHANGE) -> np.ndarray:
    """uint8 mask of the voxels that changed by more than ``min_change``."""
    return (np.abs(after.astype(np.float32) - before.astype(np.float32)) > min_change).astype(np.uint8)


def _blend(data: np.ndarray, region: Region, anomalous_box: np.ndarray) -> np.ndarray:
    out = np.array(data, dtype=np.float32, copy=True)
    box = out[region.slices]
    w = region.weight
    out[region.slices] = np.clip(box + w * (anomalous_box.astype(np.float32) - box), 0.0, 1.0)
    return out


def _box_points(region: Region) -> np.ndarray:
    """Array coordinates of every box voxel, shape (3, *box)."""
    return np.stack(np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float64) for s in region.slices], indexing="ij"))


def _sample(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear samples of ``volume`` at ``points`` (3, ...), edges repeated outside."""
    return ndimage.map_coordinates(volume, points, order=1, mode="nearest").astype(np.float32)


# ---------------------------------------------------------------- intensity kinds


def ellipsoid(data: np.ndarray, region: Region, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The seed's blended ellipsoid: alpha*x + (1-alpha)*(c + u*c/10), c~U(0,1), alpha=clip(Exp(0.25)), u~U(0,1)."""
    colour = float(rng.uniform(0.0, 1.0))
    alpha = float(np.clip(rng.exponential(0.25), 0.0, 1.0))
    u = rng.uniform(0.0, 1.0, size=region.weight.shape)
    box = data[region.slices].astype(np.float32)
    anomalous = alpha * box + (1.0 - alpha) * (colour + u * colour / 10.0)
    return _blend(data, region, anomalous), {"colour": round(colour, 4), "alpha": round(alpha, 4)}


def uniform(data: np.ndarray, region: Region, rng: np.random.Generator, *, offset: float | None = None) -> tuple[np.ndarray, dict]:
    """Uniform intensity offset of +-20-30 % of the range (sign drawn at random)."""
    if offset is None:
        offset = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.3))
    box = data[region.slices].astype(np.float32)
    return _blend(data, region, box + offset), {"offset": round(float(offset), 4)}


def noise(data: np.ndarray, region: Region, rng: np.random.Generator, *, sigma: float | None = None) -> tuple[np.ndarray, dict]:
    """Additive Gaussian noise with a standard deviation of 5-30 % of the range."""
    if sigma is None:
        sigma = float(rng.uniform(0.05, 0.3))
    box = data[region.slices].astype(np.float32)
    return _blend(data, region, box + rng.normal(0.0, sigma, size=box.shape)), {"sigma": round(float(sigma), 4)}


# ---------------------------------------------------------------- deformations


def _radial(data: np.ndarray, region: Region, gamma: float) -> np.ndarray:
    """Content at normalised radius rho is taken from radius rho**gamma (identity on the surface)."""
    pts = _box_points(region)
    centre = np.asarray(region.centre).reshape(3, *([1] * 3))
    rho = region.rho.astype(np.float64)
    inside = (rho < 1.0) & (rho > 1e-9)
    factor = np.ones_like(rho)
    factor[inside] = rho[inside] ** (gamma - 1.0)
    src = centre + (pts - centre) * factor
    return _sample(data, src)


def source(data: np.ndarray, region: Region, rng: np.random.Generator, *, strength: float | None = None) -> tuple[np.ndarray, dict]:
    """Radial 'source': content pushed out from the centre (the middle is magnified)."""
    gamma = float(rng.uniform(1.6, 3.0)) if strength is None else float(strength)
    if gamma < 1.0:
        raise ValueError("source needs strength >= 1")
    return _blend(data, region, _radial(data, region, gamma)), {"gamma": round(gamma, 4)}


def sink(data: np.ndarray, region: Region, rng: np.random.Generator, *, strength: float | None = None) -> tuple[np.ndarray, dict]:
    """Radial 'sink': content pulled in towards the centre (the surroundings shrink into it)."""
    gamma = float(rng.uniform(0.3, 0.6)) if strength is None else float(strength)
    if not 0.0 < gamma <= 1.0:
        raise ValueError("sink needs 0 < strength <= 1")
    return _blend(data, region, _radial(data, region, gamma)), {"gamma": round(gamma, 4)}


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / (np.linalg.norm(v) + 1e-12)


def shift(data: np.ndarray, region: Region, rng: np.random.Generator, *, vector=None) -> tuple[np.ndarray, dict]:
    """The region shows the content displaced by 30-70 % of its mean radius in a random direction."""
    if vector is None:
        vector = _unit(rng) * rng.uniform(0.3, 0.7) * float(np.mean(region.radii))
    vector = np.asarray(vector, dtype=np.float64).reshape(3, 1, 1, 1)
    pts = _box_points(region)
    return _blend(data, region, _sample(data, pts - vector)), {"vector": [round(float(v), 2) for v in vector.ravel()]}


def reflect(data: np.ndarray, region: Region, rng: np.random.Generator, *, normal=None) -> tuple[np.ndarray, dict]:
    """The region shows its content mirrored about a random plane through its centre."""
    n = _unit(rng) if normal is None else np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
    pts = _box_points(region)
    centre = np.asarray(region.centre).reshape(3, 1, 1, 1)
    d = np.tensordot(n, pts - centre, axes=1)
    src = pts - 2.0 * n.reshape(3, 1, 1, 1) * d
    return _blend(data, region, _sample(data, src)), {"normal": [round(float(v), 3) for v in n]}


def patch(
    data: np.ndarray, region: Region, rng: np.random.Generator, *, donor: np.ndarray | None = None, alpha: float | None = None
) -> tuple[np.ndarray, dict]:
    """FPI-style foreign patch: the region blended with the same place of another volume, factor alpha~U(0.2,1)."""
    if donor is None:
        raise MoodError("the patch anomaly needs a donor volume")
    if alpha is None:
        alpha = float(rng.uniform(0.2, 1.0))
    box = data[region.slices].astype(np.float32)
    if donor.shape == data.shape:
        other = donor[region.slices].astype(np.float32)
    else:  # same relative place in a volume of another size
        scale = (np.asarray(donor.shape, np.float64) - 1) / np.maximum(np.asarray(data.shape, np.float64) - 1, 1)
        other = _sample(donor.astype(np.float32), _box_points(region) * scale.reshape(3, 1, 1, 1))
    return _blend(data, region, (1.0 - alpha) * box + alpha * np.clip(other, 0.0, 1.0)), {"alpha": round(alpha, 4)}


#: Every kind by name (the order of the CLI's default list).
KINDS: dict[str, KindFn] = {
    "ellipsoid": ellipsoid,
    "uniform": uniform,
    "noise": noise,
    "sink": sink,
    "source": source,
    "shift": shift,
    "reflect": reflect,
    "patch": patch,
}
