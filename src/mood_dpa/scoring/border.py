"""Border damping: the detector shell's optional, tuned answer to false positives on the body's border.

WHY: every map-based method sees the edge of the body (or of the volume, where a scan is cut) as
unusual, so normal border voxels outscore interior ones (measured on the demo: the DPA's false
positives are ~1.5x denser within 2 voxels of the border than inside; ``benchmarks/bench_border_fp.py``).
The rule multiplies the calibrated score of every foreground voxel within ``width`` voxels of the
background (or of the volume's edge) by ``factor``. Anomalies CAN touch the border (e.g. ``shift``,
``reflect``), so the rule is never imposed: ``calibrate --val`` tries :data:`BORDER_CANDIDATES` on the
tuning set and keeps the one with the best pixel AP, ties going to ``off`` (today's behaviour).

The border is measured in the chessboard metric (a voxel is on the border when a background voxel,
or the outside of the volume, lies in the (2 width + 1)^3 cube around it): a max filter on the device,
run as three one-axis passes (the same cube, a fraction of the work), cheap at any size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import MoodError


@dataclass(frozen=True)
class BorderRule:
    """Damp foreground voxels within ``width`` voxels of the background or the volume's edge by ``factor``."""

    width: int = 0  # 0: off
    factor: float = 1.0  # in [0, 1]; 1: off

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 0:
            raise MoodError(f"border: width must be an integer >= 0, got {self.width!r}")
        if not 0.0 <= float(self.factor) <= 1.0:
            raise MoodError(f"border: factor must be in [0, 1], got {self.factor!r}")

    @property
    def active(self) -> bool:
        return self.width > 0 and self.factor < 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "BorderRule":
        d = d or {}
        try:
            return cls(width=int(d.get("width", 0)), factor=float(d.get("factor", 1.0)))
        except (TypeError, ValueError) as exc:
            raise MoodError(f"border: malformed ({exc})") from None

    def describe(self) -> str:
        return "off" if not self.active else f"border(width={self.width}, factor={self.factor:g})"


OFF = BorderRule()

#: what ``calibrate --val`` tries, ``off`` first (it wins ties)
BORDER_CANDIDATES: tuple[BorderRule, ...] = (OFF,) + tuple(
    BorderRule(w, f) for w in (1, 2, 3) for f in (0.5, 0.25, 0.1)
)


def border_mask(foreground: Any, width: int) -> Any:
    """Boolean tensor: the foreground voxels with a background voxel, or the volume's outside, within
    ``width`` voxels (chessboard metric). ``foreground``: a 3-D boolean torch tensor."""
    if width <= 0:
        return torch.zeros_like(foreground, dtype=torch.bool)
    background = (~foreground).to(torch.float32)[None, None]
    # the outside of the volume counts as background: a scan cut through the body has a border there too
    near = F.pad(background, (width,) * 6, mode="constant", value=1.0)
    k = 2 * width + 1
    for kernel in ((k, 1, 1), (1, k, 1), (1, 1, k)):  # a cube's max is the max along each axis in turn: 3k, not k^3
        near = F.max_pool3d(near, kernel_size=kernel, stride=1)
    return (near[0, 0] > 0) & foreground


def apply_border(scores: Any, foreground: Any, rule: BorderRule, masks: dict[int, Any] | None = None) -> Any:
    """``scores`` (a torch tensor) with the border voxels multiplied by ``rule.factor`` (a new tensor).
    ``masks``: border masks of this foreground by width, filled as needed (several rules, one volume)."""
    if not rule.active:
        return scores
    if masks is None:
        mask = border_mask(foreground, rule.width)
    else:
        mask = masks.get(rule.width)
        if mask is None:
            mask = masks[rule.width] = border_mask(foreground, rule.width)
    return torch.where(mask, scores * float(rule.factor), scores)
