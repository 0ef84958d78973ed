"""The detector at run time: every method's raw maps -> one calibrated, background-masked voxel map and a
sample score. The same code serves every method.

A detector has one or more **members**. A member is a group of model files of ONE method (e.g. the
three axis files of a DPA, or one histogram ``.npz``), combined per voxel by the member's axis rule
(:data:`mood_dpa.scoring.combine.COMBINE_RULES`). With several members, each member's raw map goes
through its own calibration (fitted on normal volumes, so members become comparable: a calibrated
score is a normal-quantile level), the calibrated member maps are combined by ``member_combine``
(:data:`MEMBER_RULES`: ``mean``, ``max`` or ``weighted``), and the result is calibrated once more by
the detector's final calibration. With one member there is no member calibration: the member's raw
map is calibrated once, exactly as the single-method detector files of version 1 were. Then: background
voxels (intensity <= ``background_threshold``) score 0 and every foreground voxel >= 2^-14; the
sample score pools the voxel map by ``sample_rule``. With a ``standardiser``
(:mod:`mood_dpa.scoring.standardise`) every voxel-map member scores the volume after its foreground
intensities are mapped onto the training volumes' landmarks (the background mask is the same either way);
sample-level members still see the volume as it is, since a change of the whole histogram (a global
gamma, another modality) is what they are there to flag.

A member can also be SAMPLE-LEVEL (its method gives :class:`~mood_dpa.scoring.sample_inferer.SampleModel`
scorers, e.g. ``volume-histogram``): it gives no voxel map, so it never enters ``member_combine``, the
calibrations or the pixel output; it gives one calibrated volume score. The detector's final sample
score is then ``sample_combine`` (:data:`SAMPLE_COMBINE_RULES`) over the map-based sample score (the
sample rule's) and the sample-level members' scores: ``map`` (ignore them; the default, and what a
map-only detector does), ``max`` or ``mean``; ``calibrate --val`` chooses it by sample AP on the tuning
set, ties going to ``map``. A detector of sample-level members only writes an all-zero voxel map and
scores a volume by the mean of its members' scores.

Any object with ``name``, ``score_volume(data) -> voxel scores`` and ``sample_score(data, voxel_scores)``
is a :class:`Detector` for the one writer (:func:`mood_dpa.inference.predict.predict_folder`). The
detector FILE is :mod:`.detector_file`, opening one is :mod:`.loading`, fitting its calibrations and
choosing its rules on a tuning set is :mod:`.tuning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..errors import MoodError
from ..scoring.border import OFF, BorderRule, apply_border
from ..scoring.calibration import UNCALIBRATED, Calibration
from ..scoring.combine import COMBINE_RULES, score_raw
from ..scoring.device import device_for_rank
from ..scoring.sample_inferer import SampleModel, score_sample
from ..scoring.sample_rules import SampleRule
from ..scoring.slice_inferer import AxisModel
from ..scoring.standardise import Standardiser
from .map_cache import active_cache, member_key, standardiser_key, volume_digest

#: how the calibrated maps of several members combine per voxel
MEMBER_RULES: tuple[str, ...] = ("mean", "max", "weighted")
#: how the map-based sample score and the sample-level members' scores combine (the first wins ties)
SAMPLE_COMBINE_RULES: tuple[str, ...] = ("map", "max", "mean")
#: Slices per forward pass on CUDA when neither the YAML nor the caller says: large batches fill the
#: device (128 slices of 128^2 at C=128 is ~1 GB per fp32 activation).
AUTO_BATCH = {"cuda": 128}
#: On a CPU the convolutions are compute-bound and batching only helps while one activation tensor
#: stays in cache: measured on the seed's C=128 at 128^2 (8 MB per slice per activation), batches of
#: 6-8 slices ran ~25 % slower than one slice at a time. So the automatic CPU batch keeps one
#: activation (widest layer x S^2 x 4 bytes x batch) within this many bytes (C=128 @128^2 -> 1,
#: the demo's C=32 @64^2 -> 16).
CPU_ACTIVATION_BYTES = 8 << 20
#: Lowest score of a foreground voxel when the background is masked (smallest normal float16, 2^-14).
FOREGROUND_FLOOR = 2.0**-14


@runtime_checkable
class Detector(Protocol):
    """What the one writer needs: voxel scores (float32, same shape, finite, in [0, 1]) and a sample score in [0, 1]."""

    name: str

    def score_volume(self, data: np.ndarray) -> np.ndarray: ...

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float: ...


@dataclass
class Member:
    """One method's group of raw scorers, its axis rule, its own calibration and its member weight."""

    name: str
    method: str
    scorers: list
    combine: str = "mean"
    calibration: Calibration | None = None
    weight: float = 1.0
    #: test-time flips: the raw map is the mean over the volume and its mirror images along these axes
    flips: tuple[int, ...] = ()
    #: the member's model files and weights (set by the loaders): what :meth:`memo_key` hashes
    files: tuple[tuple[Path, float], ...] = ()
    #: identity of the member's raw maps (files' sha256, weights, axis rule): with one, its maps go through the
    #: active raw-map memo (:mod:`mood_dpa.inference.map_cache`); without one and without files: always scored
    key: str | None = None

    def memo_key(self) -> str | None:
        """The member's key, hashed from its files the first time a memo asks (a run without a memo reads no file)."""
        if self.key is None and self.files:
            self.key = member_key(self.method, self.combine, self.files)
        return self.key

    @property
    def sample_level(self) -> bool:
        """True when the member's scorers give one volume score and no voxel map (SampleModel)."""
        return bool(self.scorers) and all(isinstance(s, SampleModel) for s in self.scorers)


def combine_sample_scores(map_score: float | None, member_scores: Sequence[float], rule: str) -> float:
    """The final sample score: ``map`` (the map-based score), ``max`` or ``mean`` of it with the
    sample-level members' scores. Without a map (``map_score`` None): the mean of the members' scores."""
    if rule not in SAMPLE_COMBINE_RULES:
        raise MoodError(f"sample combine rule {rule!r} is not known (use one of {', '.join(SAMPLE_COMBINE_RULES)})")
    if map_score is None:
        return float(np.mean(member_scores))
    if rule == "map" or not member_scores:
        return float(map_score)
    values = [float(map_score), *(float(v) for v in member_scores)]
    return float(max(values)) if rule == "max" else float(np.mean(values))


def combine_members(maps: Sequence[Any], rule: str, weights: Sequence[float] | None = None):
    """Combine calibrated member maps (torch tensors of one shape) per voxel: ``mean``, ``max`` or
    ``weighted`` (sum w_i m_i / sum w_i)."""
    if rule not in MEMBER_RULES:
        raise MoodError(f"member combine rule {rule!r} is not known (use one of {', '.join(MEMBER_RULES)})")
    if len(maps) == 1:
        return maps[0]
    if rule == "max":
        out = maps[0].clone()
        for m in maps[1:]:
            torch.maximum(out, m, out=out)
        return out
    w = [1.0] * len(maps) if rule == "mean" or weights is None else [float(x) for x in weights]
    out = maps[0] * w[0]
    for m, wi in zip(maps[1:], w[1:]):
        out.add_(m, alpha=wi)
    return out.div_(sum(w))


def average_views(plain: Any, mirrored: Sequence[Any]) -> Any:
    """The test-time-flip map: the mean of the plain map and the mirrored ones (a new tensor)."""
    out = plain.clone()
    for m in mirrored:
        out.add_(m)
    return out.div_(1 + len(mirrored)) if mirrored else out


class ShellDetector:
    """A Detector over members of any methods (see the module docstring)."""

    def __init__(
        self,
        members: Sequence[Member],
        *,
        name: str = "detector",
        member_combine: str = "mean",
        background_threshold: float | None = 0.0,
        calibration: Calibration | None = None,
        sample_rule: SampleRule | None = None,
        sample_combine: str = "map",
        batch_size: int | None = None,
        bf16: bool = False,
        device: str | Any | None = None,
        border: BorderRule | None = None,
        standardiser: Standardiser | None = None,
    ) -> None:
        if not members:
            raise MoodError("a detector needs at least one member")
        for m in members:
            if m.combine not in COMBINE_RULES:
                raise MoodError(f"combine rule {m.combine!r} is not known (use one of {', '.join(COMBINE_RULES)})")
            if not m.scorers:
                raise MoodError(f"member {m.name!r} has no model")
            if not m.sample_level and any(isinstance(s, SampleModel) for s in m.scorers):
                raise MoodError(f"member {m.name!r} mixes sample-level and voxel-map models")
        if member_combine not in MEMBER_RULES:
            raise MoodError(f"member combine rule {member_combine!r} is not known (use one of {', '.join(MEMBER_RULES)})")
        if sample_combine not in SAMPLE_COMBINE_RULES:
            raise MoodError(f"sample combine rule {sample_combine!r} is not known (use one of {', '.join(SAMPLE_COMBINE_RULES)})")
        self.device = device_for_rank(str(device) if device is not None else None)
        self.name = name
        self.members = list(members)
        self.member_combine = member_combine
        self.background_threshold = background_threshold
        self.calibration = calibration
        self.sample_rule = sample_rule or SampleRule()
        self.sample_combine = sample_combine
        self.border = border or OFF
        self.standardiser = standardiser
        #: provenance for the prediction record (set by mood_dpa.inference.loading)
        self.source: dict[str, Any] = {}
        self.bf16 = bool(bf16)
        self._torch = torch
        self.batch_size = int(batch_size) if batch_size else self._auto_batch()

    @property
    def map_members(self) -> list[Member]:
        """The members that give a voxel map (they alone enter member_combine and the calibrations)."""
        return [m for m in self.members if not m.sample_level]

    @property
    def voxel_map(self) -> bool:
        """False for a detector of sample-level members only: it has no voxel map (no pixel task)."""
        return bool(self.map_members)

    @property
    def sample_members(self) -> list[Member]:
        """The sample-level members (one volume score each, no voxel map)."""
        return [m for m in self.members if m.sample_level]

    @property
    def axis_models(self) -> list:
        """Every slice scorer of every member (what version-1 code called the ensemble's models)."""
        return [s for m in self.members for s in m.scorers if isinstance(s, AxisModel)]

    def _auto_batch(self) -> int:
        if self.device.type in AUTO_BATCH:
            return AUTO_BATCH[self.device.type]
        per_slice = max([int(getattr(s, "slice_bytes", 0)) for s in self.axis_models] or [0])
        if per_slice == 0:
            return 8
        return int(max(1, min(64, CPU_ACTIVATION_BYTES // per_slice)))

    # ---- raw and calibrated scores
    def member_raw(self, data: np.ndarray | Any, flips: Sequence[tuple[int, ...] | None] | None = None) -> list:
        """Each member's raw map (torch float32 tensors on the device; not calibrated, not masked), averaged
        over the member's test-time flips (``flips``: one flip set per member instead of theirs)."""
        chosen = flips if flips is not None else [m.flips for m in self.map_members]
        return [self.raw_map(data, m, f) for m, f in zip(self.map_members, chosen)]

    def raw_map(self, data: np.ndarray | Any, member: Member, flips: tuple[int, ...] = ()) -> Any:
        """One member's raw map, the mean over ``data`` and its mirror images along ``flips`` (each flipped back)."""
        views = self.mirror_maps(data, member, flips)
        return average_views(views[None], [views[a] for a in flips])

    def standardised(self, data: np.ndarray | Any) -> np.ndarray | Any:
        """What the members score: ``data`` with its intensities standardised (the detector has a standardiser)."""
        if self.standardiser is None:
            return data
        if isinstance(data, torch.Tensor):
            return torch.from_numpy(self.standardiser.apply(data.detach().cpu().numpy())).to(data.device)
        return self.standardiser.apply(data)

    def mirror_maps(self, data: np.ndarray | Any, member: Member, axes: Sequence[int]) -> dict:
        """``{None: raw map, axis: map of the volume mirrored along axis, flipped back}``: each view scored once
        (and, with an open raw-map memo and a member key, once per process: :mod:`.map_cache`)."""
        wanted: list[int | None] = [None, *axes]
        cache = active_cache()
        key = member.memo_key() if cache is not None else None
        if key is None:
            cache = None
        views: dict = {}
        base: tuple = ()
        if cache is not None:
            base = (key, standardiser_key(self.standardiser), volume_digest(data), str(self.device),
                    self.batch_size, self.bf16)
            for view in wanted:
                found = cache.get(base + (view,), self.device)
                if found is not None:
                    views[view] = found
        missing = [view for view in wanted if view not in views]
        if not missing:
            return views
        data = self.standardised(data)
        vol = torch.as_tensor(np.asarray(data, np.float32) if not isinstance(data, torch.Tensor) else data).to(self.device)
        for view in missing:
            if view is None:
                views[None] = score_raw(vol, member.scorers, member.combine, self.batch_size, self.device, self.bf16)
            else:
                views[view] = score_raw(vol.flip(view), member.scorers, member.combine, self.batch_size, self.device,
                                        self.bf16).flip(view)
            if cache is not None:
                cache.put(base + (view,), views[view])
        return views

    def member_maps(self, raws: Sequence[Any]) -> list:
        """Raw member maps -> the maps ``member_combine`` sees: calibrated per member when there are several."""
        maps = self.map_members
        if len(maps) == 1 and maps[0].calibration is None:
            return list(raws)
        return [(m.calibration or UNCALIBRATED).apply_torch(r) for m, r in zip(maps, raws)]

    def combine_maps(self, maps: Sequence[Any], rule: str | None = None, weights: Sequence[float] | None = None):
        rule = rule or self.member_combine
        weights = weights if weights is not None else [m.weight for m in self.map_members]
        return combine_members(maps, rule, weights)

    def member_sample_scores(self, data: np.ndarray | Any) -> list[float]:
        """Each sample-level member's score in [0, 1] (its models pooled by the member's combine rule)."""
        return [score_sample(data, m.scorers, m.combine) for m in self.sample_members]  # the volume as it is (below)

    def score_raw(self, data: np.ndarray | Any):
        """The combined map before the final calibration (torch float32 tensor on the device; not masked)."""
        return self.combine_maps(self.member_maps(self.member_raw(data)))

    def foreground(self, data: np.ndarray | Any):
        """Boolean tensor on the device: the voxels that are not masked as background."""
        torch = self._torch
        vol = torch.as_tensor(np.asarray(data, np.float32) if not isinstance(data, torch.Tensor) else data).to(self.device)
        if self.background_threshold is None:
            return torch.ones(vol.shape, dtype=torch.bool, device=self.device)
        return vol > float(self.background_threshold)

    def calibrated(self, raw, data, calibration: Calibration | None = None, border: BorderRule | None = None) -> Any:
        """Calibrated, border-damped, background-masked float32 tensor in [0, 1] from the combined map of
        ``data`` (``border``: this rule instead of the detector's own)."""
        cal = calibration or self.calibration or UNCALIBRATED
        return self.finish(cal.apply_torch(raw), data, border)

    def finish(self, scores, data, border: BorderRule | None = None, foreground: Any = None,
               border_masks: dict | None = None) -> Any:
        """Calibrated scores -> the detector's voxel map: border-damped, background-masked, in [0, 1] (a new tensor;
        ``foreground`` and ``border_masks``: computed once by a caller that tries several border rules on one volume)."""
        torch = self._torch
        border = self.border if border is None else border
        s = scores
        if self.background_threshold is not None or border.active:
            fg = self.foreground(data) if foreground is None else foreground
            s = apply_border(s, fg, border, border_masks)
        if self.background_threshold is not None:
            # background is strictly the minimum: 0, while every foreground voxel scores >= FOREGROUND_FLOOR
            # (the smallest normal float16), so foreground voxels never tie with the masked background
            s = torch.where(fg, s.clamp_min(FOREGROUND_FLOOR), torch.zeros_like(s))
        return torch.nan_to_num(s, nan=1.0).clamp_(0.0, 1.0)

    def score_volume(self, data: np.ndarray) -> np.ndarray:
        """Voxel scores: float32, same shape as ``data``, finite, in [0, 1] (all 0 without a map member)."""
        if not self.map_members:
            return np.zeros(np.shape(data), np.float32)
        return self.calibrated(self.score_raw(data), data).cpu().numpy().astype(np.float32, copy=False)

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float:
        """One score in [0, 1]: the sample rule over the (calibrated) voxel scores, combined with the
        sample-level members' scores by ``sample_combine`` (module docstring)."""
        map_score = self.sample_rule.score(voxel_scores) if self.map_members else None
        if not self.sample_members or self.sample_combine == "map" and map_score is not None:
            return float(map_score)  # type: ignore[arg-type]
        return combine_sample_scores(map_score, self.member_sample_scores(data), self.sample_combine)
