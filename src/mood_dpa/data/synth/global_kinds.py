"""Global anomaly kinds: the whole volume changed (an acquisition artefact or a foreign scan).

MOOD's sample-level task includes global artefacts (MOOD_PROTOCOL.md: blur, ...): nothing is wrong in
one place, the scan as a whole is not like the training scans. Every kind has the signature
``fn(data, rng, **options) -> (out, params)``: ``data`` a float32 volume in [0, 1] (not modified),
``rng`` the only source of randomness, ``out`` a new float32 volume in [0, 1], ``params`` JSON-ready.

**Pixel label** (:func:`global_label`): the foreground of the volume (voxels > 0 before the change)
plus every voxel outside it that changed by more than ``MIN_CHANGE`` (ghosts, blurred edges, moved
content in the background).
Why not only the voxels that changed by more than ``MIN_CHANGE``: the artefact belongs to the scan
as a whole, so each body voxel is equally anomalous; a thresholded pattern of noise or gamma
differences would be a "truth" no detector can or should localise. The sample label is 1. Pixel
tables stay on the local kinds (``evaluate``'s ``per_scope``), so these labels never mix into them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from .kinds import MIN_CHANGE, changed_mask

GlobalKindFn = Callable[..., "tuple[np.ndarray, dict]"]


def global_label(before: np.ndarray, after: np.ndarray, min_change: float = MIN_CHANGE) -> np.ndarray:
    """uint8: the foreground before (> 0), plus any voxel that changed by more than ``min_change``."""
    return ((np.asarray(before) > 0) | changed_mask(before, after, min_change).astype(bool)).astype(np.uint8)


def _foreground(data: np.ndarray) -> np.ndarray:
    return np.asarray(data) > 0


def _finish(data: np.ndarray, out: np.ndarray, keep_background: bool = True) -> np.ndarray:
    """Clip to [0, 1]; background (0 in ``data``) stays 0 unless the kind moves or adds content there."""
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if keep_background:
        out[~_foreground(data)] = 0.0
    return out


def gamma(data: np.ndarray, rng: np.random.Generator, *, value: float | None = None) -> tuple[np.ndarray, dict]:
    """Contrast change: x ** gamma, gamma in [0.4, 0.7] or [1.5, 2.5] (brighter or darker mid-tones)."""
    if value is None:
        value = float(rng.uniform(0.4, 0.7) if rng.random() < 0.5 else rng.uniform(1.5, 2.5))
    return _finish(data, np.power(np.clip(data, 0, 1), value)), {"gamma": round(float(value), 4)}


def noise_level(data: np.ndarray, rng: np.random.Generator, *, sigma: float | None = None) -> tuple[np.ndarray, dict]:
    """A noisier acquisition: Gaussian noise of sigma 0.04-0.12 over the whole foreground."""
    if sigma is None:
        sigma = float(rng.uniform(0.04, 0.12))
    out = data + rng.normal(0.0, sigma, size=data.shape).astype(np.float32)
    return _finish(data, out), {"sigma": round(float(sigma), 4)}


def blur(data: np.ndarray, rng: np.random.Generator, *, sigma: float | None = None) -> tuple[np.ndarray, dict]:
    """A blurred volume (lower resolution / motion): Gaussian of 1-2.5 voxels; the edge spreads into the background."""
    if sigma is None:
        sigma = float(rng.uniform(1.0, 2.5))
    return _finish(data, ndimage.gaussian_filter(data.astype(np.float32), sigma), keep_background=False), {"sigma": round(float(sigma), 4)}


def bias_field(data: np.ndarray, rng: np.random.Generator, *, strength: float | None = None) -> tuple[np.ndarray, dict]:
    """A smooth multiplicative field exp(strength * f), f a random low-order 3-D cosine mix in [-1, 1]."""
    if strength is None:
        strength = float(rng.uniform(0.3, 0.6))
    grids = np.meshgrid(*[np.linspace(0.0, np.pi, n, dtype=np.float32) for n in data.shape], indexing="ij", sparse=True)
    field = np.zeros(data.shape, np.float32)
    for _ in range(3):
        freq = rng.integers(0, 3, size=3)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        term = np.ones((1, 1, 1), np.float32)
        for g, f, p in zip(grids, freq, phase):
            term = term * np.cos(f * g + p).astype(np.float32)
        field += term
    field /= max(float(np.abs(field).max()), 1e-6)
    return _finish(data, data * np.exp(strength * field)), {"strength": round(float(strength), 4)}


def ghosting(data: np.ndarray, rng: np.random.Generator, *, axis: int | None = None, level: float | None = None) -> tuple[np.ndarray, dict]:
    """MRI N/2 ghost: a copy shifted by half the field of view along a phase-encoding axis, 15-35 % bright."""
    if axis is None:
        axis = int(rng.integers(0, data.ndim))
    if level is None:
        level = float(rng.uniform(0.15, 0.35))
    ghost = np.roll(data, data.shape[axis] // 2, axis=axis)
    return _finish(data, data + level * ghost, keep_background=False), {"axis": int(axis), "level": round(float(level), 4)}


def modality(data: np.ndarray, rng: np.random.Generator, *, knots=None) -> tuple[np.ndarray, dict]:
    """Another modality's intensity profile: foreground intensities remapped by a random curve, inverted
    (bright tissue dark, as T1 vs T2) half of the time; the background stays 0."""
    if knots is None:
        ys = np.sort(rng.uniform(0.1, 1.0, size=5))
        if rng.random() < 0.5:
            ys = ys[::-1]  # an inverted profile
        else:
            rng.shuffle(ys)  # tissues swap order
        knots = ys.tolist()
    xs = np.linspace(0.0, 1.0, len(knots))
    out = np.interp(np.clip(data, 0, 1), xs, np.asarray(knots, np.float64))
    return _finish(data, out), {"knots": [round(float(v), 4) for v in knots]}


def _resample(data: np.ndarray, scale: float, offset) -> np.ndarray:
    """out[p] = data[centre + (p - centre) / scale - offset] (linear, zeros outside)."""
    centre = (np.asarray(data.shape, np.float64) - 1) / 2
    matrix = np.eye(3) / scale
    shift = centre - matrix @ centre - np.asarray(offset, np.float64)
    return ndimage.affine_transform(data.astype(np.float32), matrix, offset=shift, order=1, mode="constant", cval=0.0)


def rescale(data: np.ndarray, rng: np.random.Generator, *, scale: float | None = None) -> tuple[np.ndarray, dict]:
    """The whole volume zoomed about its centre by 0.8-0.9 or 1.1-1.25 (another head size or voxel spacing)."""
    if scale is None:
        scale = float(rng.uniform(0.8, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.25))
    return _finish(data, _resample(data, scale, (0, 0, 0)), keep_background=False), {"scale": round(float(scale), 4)}


def translate(data: np.ndarray, rng: np.random.Generator, *, vector=None) -> tuple[np.ndarray, dict]:
    """The whole volume shifted by 6-15 % of each side (a badly centred field of view)."""
    if vector is None:
        vector = rng.choice([-1.0, 1.0], size=3) * rng.uniform(0.06, 0.15, size=3) * np.asarray(data.shape)
    vector = np.asarray(vector, np.float64)
    return _finish(data, _resample(data, 1.0, vector), keep_background=False), {"vector": [round(float(v), 2) for v in vector]}


#: Every global kind by name (after the local kinds in the seeding order; names differ from the local ones).
GLOBAL_KINDS: dict[str, GlobalKindFn] = {
    "gamma": gamma,
    "noise_level": noise_level,
    "blur": blur,
    "bias_field": bias_field,
    "ghosting": ghosting,
    "modality": modality,
    "rescale": rescale,
    "translate": translate,
}
