"""Calibrated scores: a monotone map from raw anomaly scores into [0, 1], fitted on normal volumes.

Why (seed defect 4): the MOOD pixel metric pools every voxel of every case into ONE average precision,
reads predictions as float16 and clips them to [0, 1]. Raw perceptual errors have no fixed scale, so
the seed's ``raw / 100`` saturated (ties at 1.0) and compressed everything else. Here the map is fitted
on the raw voxel scores of validation-fold NORMAL volumes:

* **body** (normal range): knots at the normal quantiles of levels ``p_j = 1 - 2^-j``
  (``j = 0 .. J``, 0, 0.5, 0.75, 0.875, ... up to about ``1 - 1/n``) and the normal maximum (``j = J+1``),
  mapped piecewise-linearly to ``y_j = y_top * 2^(-octaves * (1 - j / (J + 1)))`` (``y_0 = 0``). The
  quantile levels are log-spaced towards the top and the targets geometric, because float16 has 1024
  codes per octave: every segment, including the rare upper tail of the normals where anomalies
  compete with them, gets about the same number of distinct float16 values.
* **tail** (above every normal value, where anomalies live): ``y = 1 - (1 - y_top) / (1 + log1p(t))``
  with ``t = (x - x_max) / scale`` and ``scale`` = (normal max - normal median). It is continuous
  with the body at ``x_max``, strictly increasing, reaches 1 only at ``+inf``, and a log tail keeps
  anomalies many orders of magnitude apart on distinct float16 values (1 - y shrinks like 1/log x).
* below the lowest knot: 0. NaN input is treated as ``+inf`` (most abnormal) so the output is never NaN.

The map is deterministic (quantiles of a seeded subsample) and is stored as plain numbers in the
ensemble YAML (:meth:`Calibration.to_dict`).
The sample score pools the calibrated map: :mod:`mood_dpa.scoring.sample_rules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import MoodError

CALIBRATION_KIND = "quantile-log-tail"
#: Default part of [0, 1] given to the normal range; the rest is the anomaly tail.
DEFAULT_Y_TOP = 0.5
#: Elements handled per step when mapping (bounds float64 temporaries).
_CHUNK = 1 << 23
#: Octaves of float16 codes the normal range spans below y_top (0.5 * 2^-12 ~ 1.2e-4: normal float16).
DEFAULT_OCTAVES = 12.0
#: Samples taken per volume by default when fitting.
DEFAULT_SAMPLES_PER_VOLUME = 200_000


@dataclass(frozen=True)
class Calibration:
    """A fitted monotone map raw score -> [0, 1] (see the module docstring)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    tail_scale: float
    kind: str = CALIBRATION_KIND

    def __post_init__(self) -> None:
        xs, ys = np.asarray(self.xs, np.float64), np.asarray(self.ys, np.float64)
        if self.kind != CALIBRATION_KIND:
            raise MoodError(f"calibration kind {self.kind!r} is not known (expected {CALIBRATION_KIND!r})")
        if xs.ndim != 1 or xs.shape != ys.shape or xs.size < 1:
            raise MoodError("calibration: xs and ys must be lists of the same length >= 1")
        if not (np.isfinite(xs).all() and np.isfinite(ys).all() and math.isfinite(self.tail_scale)):
            raise MoodError("calibration: knots and tail_scale must be finite numbers")
        if (np.diff(xs) <= 0).any() or (np.diff(ys) <= 0).any():
            raise MoodError("calibration: xs and ys must be strictly increasing")
        if ys[0] < 0 or ys[-1] >= 1:
            raise MoodError("calibration: ys must lie in [0, 1)")
        if self.tail_scale <= 0:
            raise MoodError("calibration: tail_scale must be > 0")

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {"kind": self.kind, "xs": [float(v) for v in self.xs], "ys": [float(v) for v in self.ys], "tail_scale": float(self.tail_scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        try:
            return cls(
                xs=tuple(float(v) for v in d["xs"]),
                ys=tuple(float(v) for v in d["ys"]),
                tail_scale=float(d["tail_scale"]),
                kind=str(d.get("kind", CALIBRATION_KIND)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MoodError(f"calibration: malformed ({exc})") from None

    @property
    def y_top(self) -> float:
        return float(self.ys[-1])

    # ---------------------------------------------------------------- mapping
    def apply_torch(self, raw: torch.Tensor) -> torch.Tensor:
        """Calibrated float32 scores in [0, 1] of a tensor of raw scores (same shape and device)."""
        flat = raw.reshape(-1)
        out = torch.empty(flat.shape, dtype=torch.float32, device=raw.device)
        xs = torch.tensor(self.xs, dtype=torch.float64, device=raw.device)
        ys = torch.tensor(self.ys, dtype=torch.float64, device=raw.device)
        x_top, y_top = xs[-1], ys[-1]
        for start in range(0, flat.numel(), _CHUNK):
            x = flat[start : start + _CHUNK].to(torch.float64)
            x = torch.nan_to_num(x, nan=math.inf, posinf=math.inf, neginf=-math.inf)
            # body: piecewise linear between knots
            i = torch.searchsorted(xs, x, right=True).clamp(1, max(len(self.xs) - 1, 1))
            if len(self.xs) > 1:
                x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
                body = y0 + (x.clamp(min=xs[0]) - x0) * ((y1 - y0) / (x1 - x0))
            else:
                body = torch.full_like(x, float(y_top))
            body = torch.where(x < xs[0], torch.zeros_like(x), body)
            # tail: 1 - (1 - y_top) / (1 + log1p(t)), t >= 0; +inf -> exactly 1
            t = ((x - x_top) / self.tail_scale).clamp(min=0.0)
            tail = 1.0 - (1.0 - y_top) / (1.0 + torch.log1p(t))
            y = torch.where(x > x_top, tail, body)
            out[start : start + _CHUNK] = y.clamp(0.0, 1.0).to(torch.float32)
        return out.reshape(raw.shape)

    def apply(self, raw: np.ndarray | float) -> np.ndarray:
        """Calibrated float32 scores in [0, 1] of a numpy array (or scalar) of raw scores."""
        arr = np.asarray(raw, dtype=np.float64)
        return self.apply_torch(torch.from_numpy(np.ascontiguousarray(arr))).numpy().reshape(arr.shape)

    __call__ = apply


#: What an ensemble without a fitted calibration uses: ``x / (1 + x)`` for x >= 0 (monotone, in [0, 1)).
UNCALIBRATED = Calibration(xs=(0.0,), ys=(0.0,), tail_scale=1.0)
# with a single knot (0, 0) and y_top = 0 the tail is 1 - 1/(1 + log1p(x)): monotone into [0, 1).


def sample_raw_scores(raw: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None, n: int, seed: int) -> np.ndarray:
    """A seeded uniform subsample (at most ``n``) of the raw scores where ``mask`` is true, as float64."""
    r = raw.detach().reshape(-1).cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw).reshape(-1)
    if mask is not None:
        m = mask.detach().reshape(-1).cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask).reshape(-1)
        r = r[m.astype(bool)]
    r = r.astype(np.float64)
    r = r[np.isfinite(r)]
    if r.size > n:
        pick = np.random.default_rng(seed).choice(r.size, size=n, replace=False)
        r = r[np.sort(pick)]
    return r


def fit_calibration(
    samples: np.ndarray | Sequence[np.ndarray], y_top: float = DEFAULT_Y_TOP, max_levels: int = 30, octaves: float = DEFAULT_OCTAVES
) -> Calibration:
    """Fit the map on raw voxel scores of normal volumes (1-D array, or a list of arrays to concatenate).

    Deterministic: uses exact (linear-interpolated) quantiles of exactly the given samples.
    """
    if not isinstance(samples, np.ndarray):
        samples = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in samples]) if len(samples) else np.zeros(0)
    s = np.asarray(samples, np.float64).reshape(-1)
    s = s[np.isfinite(s)]
    if s.size < 2:
        raise MoodError("calibration: need at least 2 finite raw scores of normal voxels (are the volumes empty?)")
    if not 0.0 < y_top < 1.0:
        raise MoodError(f"calibration: y_top must be in (0, 1), got {y_top}")
    n_levels = int(min(max_levels, max(1, math.floor(math.log2(s.size)))))
    levels = np.concatenate([1.0 - 0.5 ** np.arange(n_levels + 1), [1.0]])  # 0, .5, .75, ..., 1 - 2^-J, 1
    xs = np.quantile(s, levels)
    # knot j -> y_top * 2^(-octaves * (1 - j / last)): geometric, because float16 has the same number of
    # codes (1024) in every octave; so every quantile segment gets about the same number of distinct
    # float16 values (~1024 * octaves / last), instead of the top segments (where anomalies and the
    # rarest normal voxels compete) getting the fewest. The first knot (the normal minimum) maps to 0.
    last = levels.size - 1
    ys = y_top * np.exp2(-octaves * (1.0 - np.arange(levels.size) / last))
    ys[0] = 0.0
    # equal quantiles (e.g. many identical scores): keep the LAST knot of a run of equal x, i.e. the
    # largest share of normals at or below that value
    keep = np.append(np.diff(xs) > 0, True)
    xs, ys = xs[keep], ys[keep]
    median = float(np.quantile(s, 0.5))
    spread = float(xs[-1]) - median
    scale = spread if spread > 0 else max(abs(float(xs[-1])), 1e-6) * 1e-3
    return Calibration(xs=tuple(float(v) for v in xs), ys=tuple(float(v) for v in ys), tail_scale=float(scale))
