"""What the case browser ships per case: arrays on a bounded display grid, as uint8, gzip, base64.

Why this form: the page must open from a folder with ``file://`` (no server). Chromium taints a canvas
drawn from ``file://`` images, so the voxels come in through ``<script src>`` files holding base64 text
of gzip bytes, which the page inflates with ``DecompressionStream('gzip')`` and slices itself. Shipping
voxels instead of pre-rendered slice pictures keeps threshold, opacity and every slice position live,
and costs one byte per display voxel and array before compression.

Bounds: the display grid has at most ``max_size`` voxels along any axis (the volume is block-reduced
by an integer factor: mean for intensities, max for scores and labels, so a small hot spot or lesion
never vanishes); intensities and scores are one byte each. Scores are read as MOOD reads them (float16,
clipped to [0, 1]) and coded on a logit scale, :func:`score_codes`: code 0 is "at most 1e-4", codes
1-255 cover log10-odds from -4 to +4 evenly, so calibrated maps keep the same relative resolution in
their normal range (below 0.5, where each halving of the score is a doubling of the normal voxels
above it) and in their anomaly tail (above 0.5, where 1 - score shrinks).
"""

from __future__ import annotations

import base64
import gzip
import math

import numpy as np

#: Display grid bound (voxels along the longest axis) unless the caller chooses another.
DEFAULT_MAX_SIZE = 128
#: Score coding: log10(s / (1 - s)) from -LOGIT_SPAN to +LOGIT_SPAN onto codes 1 ... 255.
LOGIT_SPAN = 4.0
#: Scores at or below this are code 0 (never drawn).
SCORE_FLOOR = 1.0 / (1.0 + 10.0**LOGIT_SPAN)


def display_factor(shape: tuple[int, ...], max_size: int = DEFAULT_MAX_SIZE) -> int:
    """The integer block size that brings the longest axis of ``shape`` to at most ``max_size`` voxels."""
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    return max(1, math.ceil(max(shape) / max_size))


def block_reduce(arr: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Reduce every axis by ``factor`` (edges padded by repetition): ``mean`` or ``max`` of each block."""
    if factor == 1:
        return arr
    pad = [(0, (-n) % factor) for n in arr.shape]
    arr = np.pad(arr, pad, mode="edge")
    shape = []
    for n in arr.shape:
        shape += [n // factor, factor]
    blocks = arr.reshape(shape)
    axes = tuple(range(1, 2 * arr.ndim, 2))
    if how == "mean":
        return blocks.mean(axis=axes, dtype=np.float64).astype(np.float32)
    if how == "max":
        return blocks.max(axis=axes)
    raise ValueError(f"unknown reduction {how!r}")


def intensity_codes(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint8 codes of ``volume`` over its own range, and that range (lo, hi) to read values back."""
    lo, hi = float(volume.min()), float(volume.max())
    span = hi - lo if hi > lo else 1.0
    codes = np.rint((volume.astype(np.float32) - lo) * (255.0 / span))
    return np.clip(codes, 0, 255).astype(np.uint8), lo, hi


def score_codes(scores: np.ndarray) -> np.ndarray:
    """uint8 logit codes of scores read as MOOD reads them (float16, clipped to [0, 1]); see the module docstring."""
    s = np.clip(np.asarray(scores, dtype=np.float16).astype(np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        logit = np.log10(s) - np.log10(1.0 - s)  # -inf at 0, +inf at 1
    t = (np.clip(logit, -LOGIT_SPAN, LOGIT_SPAN) + LOGIT_SPAN) / (2.0 * LOGIT_SPAN)  # 0 ... 1
    codes = 1 + np.rint(t * 254.0)
    return np.where(s <= SCORE_FLOOR, 0, codes).astype(np.uint8)


def code_scores(codes: np.ndarray) -> np.ndarray:
    """The score each code stands for (the centre of its bin; 0 for code 0): the page's readout uses the same formula."""
    c = np.asarray(codes, dtype=np.float64)
    logit = (c - 1.0) / 254.0 * (2.0 * LOGIT_SPAN) - LOGIT_SPAN
    return np.where(c > 0, 1.0 / (1.0 + 10.0 ** (-logit)), 0.0)


def pack(codes: np.ndarray) -> str:
    """C-order bytes of a uint8 array, gzip-compressed (no time stamp: same input, same bytes), base64 text."""
    data = np.ascontiguousarray(codes, dtype=np.uint8).tobytes()
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")


def unpack(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack` (for tests and checks)."""
    return np.frombuffer(gzip.decompress(base64.b64decode(text)), dtype=np.uint8).reshape(shape)
