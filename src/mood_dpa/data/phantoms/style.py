"""Phantom styles: the ranges a population's "scanner" (acquisition) and anatomy variation are drawn from.

A style is a :class:`PhantomStyle` of ranges, one per factor. Each factor scales (or, for ``blur``,
adds) something today's generator already draws, so the ``train`` style (every factor exactly 1,
blur 0) IS today's population, byte for byte, and other styles move one part of the distribution
outside what the training population ever shows. A range is one interval or several (``contrast``
of a shifted scanner is lower OR higher than the training's); a factor is drawn uniformly over the
intervals' union, one uniform number per factor from the style stream (:mod:`.streams`).

ACQUISITION factors (drawn per scan):

* ``contrast``: tissue intensities move away from (> 1) or towards (< 1) their mean by this factor,
  then are kept in [0.02, 0.98]. Training tissue values: brain CSF 0.14-0.22, grey 0.42-0.49,
  white 0.76-0.83, deep grey 0.56-0.63; abdomen CT-like values per organ (``abdom.py``).
* ``gamma``: the noiseless intensities are raised to this power (a scanner's other intensity curve).
* ``bias``: multiplies the amplitude of the smooth bias field (training: brain log-gain std 0.1,
  abdomen gain std 0.02).
* ``noise``: multiplies the noise std (training: drawn from 0.012-0.03 for the brain, 0.008-0.02 for
  the abdomen; so a factor of 2.5 or more is noisier than any training scan).
* ``blur``: std of a Gaussian point-spread function in voxels of the written volume, applied to the
  noiseless signal (a scan of lower resolution; training: 0, edges one voxel wide).

ANATOMY factors (drawn per subject, the same in every scan of it):

* ``scale``: multiplies the subject's size (training: brain 0.9-1.05, abdomen 0.86-1.06 of the template).
* ``shape``: multiplies the amplitude of the smooth random deformation and of the per-axis size jitter.
* ``pose``: multiplies the largest rotation (brain 5/4/5 degrees, abdomen 3/3/5) and shift (3.5 % / 3 %
  of the field of view).

How far outside the training the ``shifted`` ranges lie (their values: ``describe_styles()``, the
package docstring, the README): gamma and blur are never present in training, so every shifted scan
has a curve or resolution no training scan has; the noise std is disjoint from training's (2.5x its
largest draw at least); the brain's size range is disjoint (0.70-0.89 of the template against
0.90-1.05), the abdomen's nearly (0.67-0.90 against 0.86-1.06); contrast, bias, shape and pose move
the factor itself away from 1, while single realised values can overlap the training's (tissue
values jitter in training; a field or angle drawn near zero stays near zero). A larger head than
training's is not offered: it would leave the field of view.

A YAML file is a mapping of factor names to ranges, e.g. ``noise: [2, 3]``, ``gamma: [[0.6, 0.8], [1.3,
1.6]]`` or ``blur: 1.0``; factors it leaves out keep the training value, other keys are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import numpy as np
import yaml

from ...errors import MoodError
from .streams import style_rng

Range = tuple[tuple[float, float], ...]
StyleLike = Union["PhantomStyle", str, Path, None]

#: Factors drawn per scan, then per subject, in the order of the style streams' draws.
ACQUISITION = ("contrast", "gamma", "bias", "noise", "blur")
ANATOMY = ("scale", "shape", "pose")
#: The bounds a range may take (what the generator still draws sensibly), and each factor's identity.
LIMITS = {"contrast": (0.2, 3.0), "gamma": (0.25, 4.0), "bias": (0.0, 8.0), "noise": (0.0, 10.0), "blur": (0.0, 4.0),
          "scale": (0.6, 1.25), "shape": (0.0, 5.0), "pose": (0.0, 4.0)}
IDENTITY = {"contrast": 1.0, "gamma": 1.0, "bias": 1.0, "noise": 1.0, "blur": 0.0, "scale": 1.0, "shape": 1.0, "pose": 1.0}
#: What each factor means, for tables and ``--help``.
MEANING = {
    "contrast": "tissue contrast (x distance of tissue values from their mean)",
    "gamma": "intensity curve (noiseless intensity ** gamma)",
    "bias": "bias field strength (x amplitude)",
    "noise": "noise level (x noise std)",
    "blur": "blur / resolution (Gaussian PSF std, voxels)",
    "scale": "anatomy scale (x subject size)",
    "shape": "shape variation (x deformation and size jitter)",
    "pose": "pose (x largest rotation and shift)",
}


def _point(value: float) -> Range:
    return ((value, value),)


@dataclass(frozen=True)
class PhantomStyle:
    """Ranges of the style factors (see the module docstring); the defaults are the training population's."""

    name: str = "custom"
    contrast: Range = _point(1.0)
    gamma: Range = _point(1.0)
    bias: Range = _point(1.0)
    noise: Range = _point(1.0)
    blur: Range = _point(0.0)
    scale: Range = _point(1.0)
    shape: Range = _point(1.0)
    pose: Range = _point(1.0)

    def __post_init__(self):
        for factor in ACQUISITION + ANATOMY:
            object.__setattr__(self, factor, _check_range(factor, getattr(self, factor)))

    def ranges(self) -> dict[str, Range]:
        return {f: getattr(self, f) for f in ACQUISITION + ANATOMY}

    def shifted_factors(self) -> tuple[str, ...]:
        """The factors this style moves away from the training value."""
        return tuple(f for f, r in self.ranges().items() if r != _point(IDENTITY[f]))


def _check_range(factor: str, value) -> Range:
    """A number, an interval [lo, hi] or a list of intervals -> a tuple of (lo, hi) inside LIMITS."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [[value, value]]
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        value = [value]
    lo_limit, hi_limit = LIMITS[factor]
    out = []
    try:
        for lo, hi in value:
            if isinstance(lo, bool) or isinstance(hi, bool):
                raise ValueError
            lo, hi = float(lo), float(hi)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError
            out.append((lo, hi))
    except (TypeError, ValueError):
        raise MoodError(f"style {factor}: expected a number, [low, high] or a list of [low, high], got {value!r}") from None
    if not out:
        raise MoodError(f"style {factor}: no interval given")
    for lo, hi in out:
        if not lo_limit <= lo <= hi <= hi_limit:
            raise MoodError(f"style {factor}: interval [{lo:g}, {hi:g}] must have low <= high, "
                            f"both within [{lo_limit:g}, {hi_limit:g}]")
    return tuple(out)


def draw_in(rng_value: float, intervals: Range) -> float:
    """The point at fraction ``rng_value`` (in [0, 1)) of the intervals' union (by length; points equally)."""
    lengths = [hi - lo for lo, hi in intervals]
    total = sum(lengths)
    if total == 0.0:
        return intervals[min(int(rng_value * len(intervals)), len(intervals) - 1)][0]
    t = rng_value * total
    for (lo, hi), length in zip(intervals, lengths):
        if t <= length:
            return min(max(lo + t, lo), hi)
        t -= length
    return intervals[-1][1]


@dataclass(frozen=True)
class StyleDraw:
    """The factor values one volume is made with."""

    contrast: float = 1.0
    gamma: float = 1.0
    bias: float = 1.0
    noise: float = 1.0
    blur: float = 0.0
    scale: float = 1.0
    shape: float = 1.0
    pose: float = 1.0


def draw_style(style: "PhantomStyle", kind: str, seed: int, index: int, scan: int | None = None) -> StyleDraw:
    """The factors of subject ``index`` (anatomy) and of its scan ``scan`` (acquisition; ``None``: the one
    volume ``make_phantom`` gives without a scan). One uniform number per factor, in a fixed order."""
    subject = style_rng(kind, seed, index)
    values = {f: draw_in(float(subject.random()), getattr(style, f)) for f in ANATOMY}
    acq = subject if scan is None else style_rng(kind, seed, index, scan)
    values.update({f: draw_in(float(acq.random()), getattr(style, f)) for f in ACQUISITION})
    return StyleDraw(**values)


def stretch_contrast(params: dict, tissues: tuple[str, ...], factor: float) -> None:
    """Move the tissue values ``params[t]`` away from (factor > 1) or towards their mean, kept in [0.02, 0.98]."""
    if factor == 1.0:
        return
    mean = float(np.mean([params[t] for t in tissues]))
    for t in tissues:
        params[t] = float(np.clip(mean + factor * (params[t] - mean), 0.02, 0.98))


# ============================================================================ the named styles

_SHIFTED = dict(
    contrast=((0.65, 0.8), (1.2, 1.35)),
    gamma=((0.7, 0.85), (1.2, 1.45)),
    bias=((2.0, 3.0),),
    noise=((2.5, 3.0),),
    blur=((0.6, 0.9),),
    scale=((0.78, 0.85),),
    shape=((1.8, 2.5),),
    pose=((2.0, 3.0),),
)

#: ``train``: today's population. ``shifted``: a held-out scanner and population, every factor outside the
#: training value. One style per factor moves that factor alone, as ``shifted`` does.
STYLES: dict[str, PhantomStyle] = {
    "train": PhantomStyle("train"),
    "shifted": PhantomStyle("shifted", **_SHIFTED),
    **{f: PhantomStyle(f, **{f: r}) for f, r in _SHIFTED.items()},
}


def load_style(path: str | Path) -> PhantomStyle:
    """A style from a YAML mapping of factor names to ranges (other factors keep the training value)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MoodError(f"{path}: cannot read the style file ({type(exc).__name__})") from None
    if not isinstance(data, Mapping):
        raise MoodError(f"{path}: a style file is a mapping of factor names to ranges ({', '.join(LIMITS)})")
    bad = sorted(set(map(str, data)) - set(LIMITS) - {"name"})
    if bad:
        raise MoodError(f"{path}: unknown style factor(s) {', '.join(bad)}; choose from {', '.join(LIMITS)}")
    ranges = {k: v for k, v in data.items() if k != "name"}
    return PhantomStyle(str(data.get("name", path.stem)), **ranges)


def resolve_style(style: StyleLike) -> PhantomStyle:
    """``None`` -> train; a name of :data:`STYLES`; a path to a YAML file; or a :class:`PhantomStyle`."""
    if style is None:
        return STYLES["train"]
    if isinstance(style, PhantomStyle):
        return style
    if isinstance(style, str) and style in STYLES:
        return STYLES[style]
    path = Path(style)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise MoodError(f"{path}: no such style file")
        return load_style(path)
    raise MoodError(f"unknown phantom style {str(style)!r}; choose one of {', '.join(STYLES)} or give a YAML file")


def _fmt(intervals: Range) -> str:
    return " or ".join(f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}" for lo, hi in intervals)


def describe_styles() -> str:
    """The markdown table of the factors: meaning, training value, the ``shifted`` style's ranges."""
    rows = ["| factor | what it changes | train | shifted (and its one-factor style) |", "|---|---|---|---|"]
    for f in ACQUISITION + ANATOMY:
        per = "per scan" if f in ACQUISITION else "per subject"
        rows.append(f"| `{f}` | {MEANING[f]}, {per} | {_fmt(STYLES['train'].ranges()[f])} | {_fmt(STYLES['shifted'].ranges()[f])} |")
    return "\n".join(rows)


__all__ = ["PhantomStyle", "StyleDraw", "STYLES", "ACQUISITION", "ANATOMY", "LIMITS", "draw_style", "load_style",
           "resolve_style", "describe_styles", "stretch_contrast"]
