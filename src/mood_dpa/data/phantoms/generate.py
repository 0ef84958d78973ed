"""Make and write phantom volumes: one subject (and scan) of a population in a style, at any cubic size.

The kind's module draws the coarse fields (``brain.py``, ``abdom.py``); here they are upsampled slab by
slab to full resolution and finished the same way for every kind: the style's blur (over the whole
noiseless volume), gamma, the voxel noise, the one-voxel outer edge, and the clip to [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ...errors import MoodError
from ...outputs import mark_output_dir
from ...progress import track
from ...volumes import write_volume
from . import abdom, brain
from .fields import Slab, Upsampler
from .streams import Streams
from .style import StyleLike, draw_style, resolve_style

KINDS = ("brain", "abdom")
MIN_SIZE, MAX_SIZE = 32, 512
COARSE_MAX = 128
MAX_SCANS = 1000
_MODULES = {"brain": brain, "abdom": abdom}


def _as_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MoodError(f"phantom {name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise MoodError(f"phantom {name} must be {span}, got {value}")
    return value


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MoodError(f"unknown phantom kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


def _finish(img: np.ndarray, edge: np.ndarray, sigma: float, gamma: float, noise_rng: np.random.Generator) -> np.ndarray:
    """Gamma, noise, the outer edge (``edge``: 1 inside, ramping to 0 outside), clipped to [0, 1] with +0 background."""
    if gamma != 1.0:
        np.maximum(img, 0.0, out=img)
        np.power(img, np.float32(gamma), out=img)
    img += sigma * noise_rng.standard_normal(img.shape, dtype=np.float32)
    img *= edge
    np.clip(img, 0.0, 1.0, out=img)
    img += 0.0  # turns -0.0 into 0.0, so the background is exactly +0
    return img


def make_phantom(kind: str, size: int, seed: int, index: int = 0, return_labels: bool = False, *,
                 style: StyleLike = None, scan: int | None = None):
    """Make subject ``index`` of the ``kind`` ("brain" or "abdom") phantom population ``seed``.

    Returns a float32 ``size**3`` volume in [0, 1] with an exactly-zero background; with
    ``return_labels=True``, returns ``(volume, labels, names)`` where ``labels`` is a uint8 tissue
    volume and ``names`` maps tissue names to label values (BRAIN_LABELS / ABDOM_LABELS).

    ``style``: a name of ``STYLES``, a YAML file or a ``PhantomStyle`` (default ``train``: today's
    population, byte for byte). ``scan``: scan k of the subject, a new acquisition (contrast, bias
    field, noise, and the style's acquisition factors) of the same anatomy (same labels); without it,
    the subject's one volume of today's populations.
    """
    _check_kind(kind)
    size = _as_int(size, "size", MIN_SIZE, MAX_SIZE)
    seed = _as_int(seed, "seed", 0)
    index = _as_int(index, "index", 0)
    if scan is not None:
        scan = _as_int(scan, "scan", 0)
    look = draw_style(resolve_style(style), kind, seed, index, scan)
    streams = Streams(kind, seed, index, scan)
    module = _MODULES[kind]
    n = min(size, COARSE_MAX)
    up = Upsampler(n, size)
    fields, params = module.coarse(streams, n, look)
    boxes = module.boxes(fields, up)
    inv_eps = size / 2.0  # one voxel is 2/size in the [-1, 1] coordinates
    vol = np.zeros((size, size, size), dtype=np.float32)
    labels = np.zeros((size, size, size), dtype=np.uint8) if return_labels else None
    body = up.box_of(fields[module.HULL] > 0.0)  # everything outside stays exactly 0
    if body is not None:
        (a0, b0), (c, d), (e, f) = body
        rows = max(1, (1 << 21) // ((d - c) * (f - e)))
        slabs = [((a, min(b0, a + rows)), (c, d), (e, f)) for a in range(a0, b0, rows)]
        edges = {}
        for box in slabs:
            img, lab, hull = module.slab(Slab(fields, boxes, up, box), params, inv_eps)
            edge = np.clip(hull * inv_eps, 0.0, 1.0, out=hull)
            where = tuple(slice(lo, hi) for lo, hi in box)
            if labels is not None:
                labels[where] = lab
            if look.blur > 0.0:  # the whole noiseless volume first, blurred below
                vol[where], edges[box] = img, edge
            else:
                vol[where] = _finish(img, edge, params["sigma"], look.gamma, streams.noise)
        if look.blur > 0.0:
            where = tuple(slice(lo, hi) for lo, hi in body)
            vol[where] = gaussian_filter(vol[where], look.blur, mode="constant", truncate=3.0)
            for box in slabs:
                part = tuple(slice(lo, hi) for lo, hi in box)
                vol[part] = _finish(vol[part].copy(), edges[box], params["sigma"], look.gamma, streams.noise)
    if return_labels:
        return vol, labels, dict(module.LABELS)
    return vol


def phantom_affine(size: int) -> np.ndarray:
    """1 mm isotropic, RAS axes, world origin at the centre of the volume."""
    aff = np.eye(4)
    aff[:3, 3] = -(size - 1) / 2.0
    return aff


def phantom_name(index: int, scan: int | None = None) -> str:
    """``00007.nii.gz`` for subject 7, ``00007-002.nii.gz`` for its scan 2 (one volume id per file)."""
    return f"{index:05d}.nii.gz" if scan is None else f"{index:05d}-{scan:03d}.nii.gz"


def write_phantoms(
    kind: str,
    count: int,
    size: int,
    seed: int,
    out_dir: str | os.PathLike,
    compresslevel: int = 1,
    start: int = 0,
    *,
    style: StyleLike = None,
    scans: int | None = None,
) -> list[Path]:
    """Write subjects start..start+count-1 as ``out_dir/<index:05d>.nii.gz`` (atomic writes, progress bar).

    ``start`` gives held-out subjects their own indices, hence other subjects AND other file names than a
    training set written from 0 with the same seed. ``style``: see :func:`make_phantom`. ``scans=K``:
    K scans of each subject instead of its one volume, ``<index:05d>-<scan:03d>.nii.gz`` (scans 0..K-1)."""
    _check_kind(kind)
    count = _as_int(count, "count", 1)
    size = _as_int(size, "size", MIN_SIZE, MAX_SIZE)
    seed = _as_int(seed, "seed", 0)
    compresslevel = _as_int(compresslevel, "gzip level", 0, 9)
    start = _as_int(start, "start", 0)
    if scans is not None:
        scans = _as_int(scans, "scans", 1, MAX_SCANS)
    style = resolve_style(style)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MoodError(f"{out}: exists and is not a folder")
    mark_output_dir(out)  # creates it, with the marker of a mood-dpa output
    affine = phantom_affine(size)
    items = [(i, None) for i in range(start, start + count)] if scans is None else \
        [(i, k) for i in range(start, start + count) for k in range(scans)]
    label = f"{kind} phantoms {size}^3" + ("" if style.name == "train" else f" ({style.name})")
    paths = []
    for i, k in track(items, label, total=len(items)):
        vol = make_phantom(kind, size, seed, i, style=style, scan=k)
        paths.append(write_volume(out / phantom_name(i, k), vol, affine=affine, compresslevel=compresslevel))
    return paths
