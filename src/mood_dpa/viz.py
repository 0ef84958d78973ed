"""Pictures of volumes: three orthogonal slices, with a mask contour and a score heat map.

Rendering uses matplotlib's Agg canvas directly (no pyplot, no display needed) and the PNG is
written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_path
from .errors import MoodError

# (fixed axis, name); each panel shows the other two axes with the higher one pointing up
_VIEWS = ((0, "sagittal"), (1, "coronal"), (2, "axial"))


def _as_3d(name: str, array) -> np.ndarray:
    if not isinstance(array, np.ndarray) and hasattr(array, "affine"):
        array = array.data  # a mood_dpa.volumes.Volume
    arr = np.asarray(array)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise MoodError(f"{name} must be a 3-D volume, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise MoodError(f"{name} must hold real numbers, got {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise MoodError(f"{name} has NaN or infinite values")
    return arr


def slice_centre(shape: Sequence[int], mask: np.ndarray | None = None) -> tuple[int, int, int]:
    """The middle of the volume, or the (rounded) centre of mass of a non-empty mask."""
    if mask is not None:
        idx = np.nonzero(mask > 0.5)
        if idx[0].size:
            return tuple(int(round(float(i.mean()))) for i in idx)  # type: ignore[return-value]
    return tuple(int(s) // 2 for s in shape)  # type: ignore[return-value]


def _take(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    # the remaining two axes in array order, transposed so that the later one is vertical
    return np.take(arr, index, axis=axis).T


def show_volume(
    volume,
    out_png: str | os.PathLike,
    mask=None,
    scores=None,
    title: str | None = None,
    center: Sequence[int] | None = None,
    log_scores: bool = False,
) -> Path:
    """Draw three orthogonal slices of ``volume`` to ``out_png``.

    ``log_scores`` draws calibrated scores in [0, 1] on a log colour scale from 1e-4 to 1 (lower
    scores transparent): the calibration spaces normal quantiles geometrically, so this shows where a
    voxel ranks among normal voxels, comparably across cases.

    Slices pass through the middle, through ``center`` (voxel indices) when given, or else
    through the centre of mass of ``mask``. The volume is drawn in grey over its full intensity
    range, ``mask`` (same shape, > 0.5 is inside) as a red contour, and ``scores`` (same shape)
    as a semi-transparent heat map with a colour bar. Returns the PNG path.
    """
    # heavy: matplotlib only when drawing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    vol = _as_3d("volume", volume)
    msk = None if mask is None else _as_3d("mask", mask)
    scr = None if scores is None else _as_3d("scores", scores)
    for name, arr in (("mask", msk), ("scores", scr)):
        if arr is not None and arr.shape != vol.shape:
            raise MoodError(f"{name} shape {arr.shape} does not match the volume shape {vol.shape}")
    if center is None:
        centre = slice_centre(vol.shape, msk)
    else:
        centre = tuple(int(c) for c in center)
        if len(centre) != 3 or any(not 0 <= c < s for c, s in zip(centre, vol.shape)):
            raise MoodError(f"center {tuple(center)} is not a voxel of a volume of shape {vol.shape}")
    out = Path(out_png)
    if out.suffix.lower() != ".png":
        raise MoodError(f"{out}: the picture must be a .png file")

    lo, hi = float(vol.min()), float(vol.max())
    if hi <= lo:
        hi = lo + 1.0
    norm = None
    if scr is not None and log_scores:
        from matplotlib.colors import LogNorm  # heavy: matplotlib

        if scr.min() < 0.0 or scr.max() > 1.0:
            raise MoodError("log_scores needs scores in [0, 1] (calibrated predictions)")
        norm = LogNorm(vmin=1e-4, vmax=1.0)
        scr = np.ma.masked_less(scr, 1e-4)
    elif scr is not None:
        s_lo, s_hi = float(scr.min()), float(scr.max())
        if s_lo >= 0.0 and s_hi <= 1.0:
            s_lo, s_hi = 0.0, 1.0
        elif s_hi <= s_lo:
            s_hi = s_lo + 1.0

    fig = Figure(figsize=(12.6 if scr is not None else 12.0, 4.6), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    heat = None
    for ax, (axis, name) in zip(axes, _VIEWS):
        index = centre[axis]
        ax.imshow(_take(vol, axis, index), cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
        if scr is not None:
            scale = {"norm": norm} if norm is not None else {"vmin": s_lo, "vmax": s_hi}
            heat = ax.imshow(_take(scr, axis, index), cmap="inferno", alpha=0.6 if norm is not None else 0.5,
                             origin="lower", interpolation="nearest", **scale)
        if msk is not None:
            sl = _take(msk, axis, index) > 0.5
            if sl.any() and not sl.all():
                ax.contour(sl.astype(np.float32), levels=[0.5], colors=["#ff3030"], linewidths=1.2)
        others = [a for a in range(3) if a != axis]
        ax.set_title(f"{name}: axis {axis} = {index}", color="white", fontsize=10)
        ax.set_xlabel(f"axis {others[0]}", color="0.7", fontsize=8)
        ax.set_ylabel(f"axis {others[1]}", color="0.7", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("0.3")
    if heat is not None:
        bar = fig.colorbar(heat, ax=list(axes), fraction=0.025, pad=0.02)
        bar.set_label("score", color="white")
        bar.ax.tick_params(colors="white", labelsize=8)
    if title:
        fig.suptitle(title, color="white", fontsize=12)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return out
