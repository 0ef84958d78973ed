"""The detector shell: every method's raw maps -> one calibrated, background-masked voxel map and a
sample score; its YAML file; and the calibrate workflow. The same code serves every method.

A detector has one or more **members**. A member is a group of model files of ONE method (e.g. the
three axis files of a DPA, or one histogram ``.npz``), combined per voxel by the member's axis rule
(:data:`mood_dpa.inference.scorer.COMBINE_RULES`). With several members, each member's raw map goes
through its own calibration (fitted on normal volumes, so members become comparable: a calibrated
score is a normal-quantile level), the calibrated member maps are combined by ``member_combine``
(:data:`MEMBER_RULES`: ``mean``, ``max`` or ``weighted``), and the result is calibrated once more by
the detector's final calibration. With one member there is no member calibration: the member's raw
map is calibrated once, exactly as the single-method ensembles of version 1 were. Then: background
voxels (intensity <= ``background_threshold``) score 0 and every foreground voxel >= 2^-14; the
sample score pools the voxel map by ``sample_rule``.

A member can also be SAMPLE-LEVEL (its method gives :class:`~mood_dpa.inference.scorer.SampleModel`
scorers, e.g. ``volume-histogram``): it gives no voxel map, so it never enters ``member_combine``, the
calibrations or the pixel output; it gives one calibrated volume score. The detector's final sample
score is then ``sample_combine`` (:data:`SAMPLE_COMBINE_RULES`) over the map-based sample score (the
sample rule's) and the sample-level members' scores: ``map`` (ignore them; the default, and what a
map-only detector does), ``max`` or ``mean``; ``calibrate --val`` chooses it by sample AP on the tuning
set, ties going to ``map``. A detector of sample-level members only writes an all-zero voxel map and
scores a volume by the mean of its members' scores.

The detector file (``*.yaml``, version 2; paths are relative to the file)::

    format: mood-dpa/ensemble
    version: 2
    name: brain_pixel
    members:
      - name: dpa
        method: dpa               # the registry's method name (mood_dpa.methods.registry)
        models:                   # one model file per axis, or any number
          - {path: axis0/model.pt, weight: 1.0}
          - {path: axis1/model.pt, weight: 1.0}
          - {path: axis2/model.pt, weight: 1.0}
        combine: mean             # mean | max | mean_covered (see mood_dpa.inference.scorer)
        calibration: {...}        # this member's raw -> [0, 1]; null with one member
        weight: 1.0               # used by member_combine: weighted
      - name: histogram
        method: histogram
        models: [{path: histogram.npz, weight: 1.0}]
        calibration: {...}
      - name: volume-histogram    # a sample-level member: no voxel map, one score per volume
        method: volume-histogram
        models: [{path: volhist.npz, weight: 1.0}]
    member_combine: mean          # mean | max | weighted (chosen on the tuning set by `calibrate --val`)
    background_threshold: 0.0     # voxels <= this score 0, all others >= 2^-14; null = no mask
    border: {width: 0, factor: 1.0}  # foreground voxels within `width` voxels of the background or the
                                  # volume's edge: calibrated score x `factor` (mood_dpa.inference.border);
                                  # width 0 = off (today's behaviour, and what a file without it reads as);
                                  # chosen on the tuning set by `calibrate --val`
    calibration:                  # final raw -> [0, 1] (mood_dpa.inference.calibration); a mapping,
      kind: quantile-log-tail     # or a path to a YAML/JSON file holding one; null = uncalibrated
      xs: [...]
      ys: [...]
      tail_scale: 0.123
    sample_rule: {kind: topk, fraction: 0.0001, sigma: 1.0}
    sample_combine: map           # map | max | mean: the sample rule's score with the sample-level members'
    batch_size: null              # slices per forward pass; null = automatic (128 on CUDA; on a CPU by model size)
    bf16: false                   # bf16 autocast on CUDA
    info: {...}                   # provenance: what calibration was fitted on, what was tuned on (tuned_on)

Version-1 files (``models:`` + ``combine:`` at the top) are read as one DPA member.

Python API (what the demo calls)::

    write_ensemble("det.yaml", ["ax0/model.pt", "ax1/model.pt", "ax2/model.pt", "histogram.npz"])  # 2 members
    calibrate_ensemble("det.yaml", normal_volumes="val_normals/", val_dir="tuning/")
    det = load_ensemble("det.yaml", device=None)                        # a Detector
    predict_folder(det, "synth_val/toy", "pred", "both")                 # mood_dpa.inference.predict

An uncalibrated detector still predicts (raw x -> 1 - 1/(1 + log1p(x)), monotone into [0, 1)), but its
scores are not comparable across cases: calibrate before evaluating pooled pixel AP.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import yaml
from pydantic import Field

from ..atomic import write_text
from ..config import StrictModel, read_yaml, validate
from ..errors import MoodError
from .border import BORDER_CANDIDATES, OFF, BorderRule, apply_border
from .calibration import (
    CANDIDATE_RULES,
    DEFAULT_SAMPLES_PER_VOLUME,
    DEFAULT_Y_TOP,
    UNCALIBRATED,
    Calibration,
    SampleRule,
    candidate_scores,
    choose_sample_rule,
    fit_calibration,
    sample_raw_scores,
)

FORMAT = "mood-dpa/ensemble"
VERSION = 2
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
#: ``weighted`` candidates tried by calibrate: one member emphasised this much over the others (10: the
#: others only break its ties and add where it is silent)
EMPHASIS = (3.0, 10.0)


# ============================================================================ the file


class ModelEntry(StrictModel):
    path: str
    weight: float = Field(1.0, gt=0)


class CalibrationSpec(StrictModel):
    kind: str = "quantile-log-tail"
    xs: list[float]
    ys: list[float]
    tail_scale: float


class SampleRuleSpec(StrictModel):
    kind: Literal["max", "topk", "smoothed_max", "slice_mean_smoothed", "above_normal_volume"] = "topk"
    fraction: float = 1e-4
    sigma: float = 1.0
    axis: int = Field(0, ge=0, le=2)  # slice_mean_smoothed only
    level: float = Field(DEFAULT_Y_TOP, ge=0, lt=1)  # above_normal_volume only


class BorderSpec(StrictModel):
    width: int = Field(0, ge=0)  # 0: off
    factor: float = Field(1.0, ge=0, le=1)


class MemberSpec(StrictModel):
    name: str = ""
    method: str = "dpa"
    models: list[ModelEntry] = Field(min_length=1)
    combine: Literal["mean", "max", "mean_covered"] = "mean"
    calibration: CalibrationSpec | None = None
    weight: float = Field(1.0, gt=0)


class EnsembleSpec(StrictModel):
    format: Literal["mood-dpa/ensemble"] = FORMAT
    version: int = VERSION
    name: str = ""
    members: list[MemberSpec] = Field(min_length=1)
    member_combine: Literal["mean", "max", "weighted"] = "mean"
    background_threshold: float | None = 0.0
    border: BorderSpec = Field(default_factory=BorderSpec)  # absent (older files): off
    calibration: CalibrationSpec | str | None = None
    sample_rule: SampleRuleSpec = Field(default_factory=SampleRuleSpec)
    sample_combine: Literal["map", "max", "mean"] = "map"
    batch_size: int | None = Field(None, ge=1)  # None: automatic (ShellDetector._auto_batch)
    bf16: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


DetectorSpec = EnsembleSpec


def _upgrade_v1(data: dict) -> dict:
    """A version-1 file (top-level ``models`` + ``combine``, DPA only) as one member of version 2."""
    data = dict(data)
    member = {"name": "dpa", "method": "dpa", "models": data.pop("models", None)}
    if "combine" in data:
        member["combine"] = data.pop("combine")
    data["members"] = [member]
    data["version"] = VERSION
    return data


def read_spec(path: str | os.PathLike) -> EnsembleSpec:
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such ensemble file")
    data = read_yaml(path)
    if data.get("format") not in (None, FORMAT):
        raise MoodError(f"{path}: not a mood-dpa ensemble file (format {data.get('format')!r})")
    version = data.get("version", 1)
    if isinstance(version, int) and version > VERSION:
        raise MoodError(f"{path}: ensemble version {version} is newer than this mood-dpa reads ({VERSION})")
    if "members" not in data and (version == 1 or "models" in data):
        data = _upgrade_v1(data)
    return validate(EnsembleSpec, data, str(path))


def write_spec(path: str | os.PathLike, spec: EnsembleSpec) -> Path:
    """Atomically write a detector file (floats keep their exact repr, so a round trip is exact)."""
    data = spec.model_dump(mode="json")
    return write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))


def resolve_calibration(spec: EnsembleSpec, base: Path) -> Calibration | None:
    """The detector's final calibration (inline, or read from the file it names, relative to ``base``)."""
    c = spec.calibration
    if c is None:
        return None
    if isinstance(c, str):
        p = (base / c) if not Path(c).is_absolute() else Path(c)
        d = read_yaml(p)  # JSON is YAML
        return Calibration.from_dict(d.get("calibration", d))
    return Calibration.from_dict(c.model_dump())


def _relative(f: Path, base: Path) -> str:
    fa = f.resolve()
    try:
        return Path(os.path.relpath(fa, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return str(fa)


def build_spec(
    path: str | os.PathLike,
    model_files: Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    *,
    combine: str = "mean",
    member_combine: str = "mean",
    background_threshold: float | None = 0.0,
    calibration: Calibration | None = None,
    sample_rule: SampleRule | None = None,
    batch_size: int | None = None,
    bf16: bool = False,
    name: str | None = None,
    check: bool = True,
    groups: Sequence[str] | None = None,
) -> EnsembleSpec:
    """The detector spec (in memory) of ``model_files``, grouped by the kind each file declares into one
    member per method, in order of first appearance; ``groups`` (one member name per file) groups them
    explicitly instead (e.g. a 2-D and a 3-D segmenter as two members, each calibrated on its own).
    ``check=True`` opens every model file once (on the CPU) so a wrong path or file fails here, not at
    prediction time."""
    from ..methods.registry import method_for_file

    path = Path(path)
    files = [Path(f) for f in model_files]
    if not files:
        raise MoodError("an ensemble needs at least one model file")
    weights = [1.0] * len(files) if weights is None else [float(w) for w in weights]
    if len(weights) != len(files):
        raise MoodError(f"{len(files)} model files but {len(weights)} weights")
    if groups is not None and len(groups) != len(files):
        raise MoodError(f"{len(files)} model files but {len(groups)} member names")
    base = path.parent.resolve()
    members: dict[str, dict] = {}
    for k, (f, w) in enumerate(zip(files, weights)):
        entry = method_for_file(f)
        if check:
            entry.load(f, "cpu")
        key = groups[k] if groups is not None else entry.name
        m = members.setdefault(key, {"name": key, "method": entry.name, "models": [], "combine": combine})
        if m["method"] != entry.name:
            raise MoodError(f"member {key!r} mixes methods {m['method']} and {entry.name} ({f})")
        m["models"].append({"path": _relative(f, base), "weight": w})
    return validate(
        EnsembleSpec,
        {
            "name": name if name is not None else path.name.split(".")[0],
            "members": list(members.values()),
            "member_combine": member_combine,
            "background_threshold": background_threshold,
            "calibration": calibration.to_dict() if calibration is not None else None,
            "sample_rule": (sample_rule or SampleRule()).to_dict(),
            "batch_size": batch_size,
            "bf16": bf16,
        },
        str(path),
    )


def write_ensemble(path: str | os.PathLike, model_files: Sequence[str | os.PathLike], weights: Sequence[float] | None = None,
                   **options: Any) -> Path:
    """Write a detector YAML listing ``model_files`` (stored relative to the YAML's folder when possible);
    options as :func:`build_spec`."""
    return write_spec(path, build_spec(path, model_files, weights, **options))


# ============================================================================ the detector


@dataclass
class Member:
    """One method's group of raw scorers, its axis rule, its own calibration and its member weight."""

    name: str
    method: str
    scorers: list
    combine: str = "mean"
    calibration: Calibration | None = None
    weight: float = 1.0

    @property
    def sample_level(self) -> bool:
        """True when the member's scorers give one volume score and no voxel map (SampleModel)."""
        from .scorer import SampleModel

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
    import torch

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
    ) -> None:
        import torch

        from .scorer import COMBINE_RULES, SampleModel, device_for_rank

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
        #: provenance for the prediction record (set by load_ensemble / single_file_detector)
        self.source: dict[str, Any] = {}
        self.bf16 = bool(bf16)
        self._torch = torch
        self.batch_size = int(batch_size) if batch_size else self._auto_batch()

    @property
    def map_members(self) -> list[Member]:
        """The members that give a voxel map (they alone enter member_combine and the calibrations)."""
        return [m for m in self.members if not m.sample_level]

    @property
    def sample_members(self) -> list[Member]:
        """The sample-level members (one volume score each, no voxel map)."""
        return [m for m in self.members if m.sample_level]

    @property
    def axis_models(self) -> list:
        """Every slice scorer of every member (what version-1 code called the ensemble's models)."""
        from .scorer import AxisModel

        return [s for m in self.members for s in m.scorers if isinstance(s, AxisModel)]

    @property
    def combine(self) -> str:
        return (self.map_members or self.members)[0].combine

    def _auto_batch(self) -> int:
        if self.device.type in AUTO_BATCH:
            return AUTO_BATCH[self.device.type]
        per_slice = max([int(getattr(s, "slice_bytes", 0)) for s in self.axis_models] or [0])
        if per_slice == 0:
            return 8
        return int(max(1, min(64, CPU_ACTIVATION_BYTES // per_slice)))

    # ---- raw and calibrated scores
    def member_raw(self, data: np.ndarray | Any) -> list:
        """Each member's raw map (torch float32 tensors on the device; not calibrated, not masked)."""
        from .scorer import score_raw

        return [score_raw(data, m.scorers, m.combine, self.batch_size, self.device, self.bf16) for m in self.map_members]

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
        from .scorer import score_sample

        return [score_sample(data, m.scorers, m.combine) for m in self.sample_members]

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
        torch = self._torch
        cal = calibration or self.calibration or UNCALIBRATED
        border = self.border if border is None else border
        s = cal.apply_torch(raw)
        if self.background_threshold is not None or border.active:
            fg = self.foreground(data)
            s = apply_border(s, fg, border)
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


def EnsembleDetector(models: Sequence[Any], *, name: str = "dpa-ensemble", weights: Sequence[float] | None = None,
                     combine: str = "mean", device: str | Any | None = None, **options: Any) -> ShellDetector:
    """A one-member detector over DPA models (``DPAModel``) or ready slice / volume scorers (version-1 API)."""
    from ..methods.dpa.scorer import axis_model
    from .scorer import AxisModel, VolumeModel, device_for_rank

    dev = device_for_rank(str(device) if device is not None else None)
    weights = list(weights) if weights is not None else [getattr(m, "weight", 1.0) for m in models]
    if len(weights) != len(models):
        raise MoodError(f"{len(models)} models but {len(weights)} weights")
    scorers = []
    for k, (m, w) in enumerate(zip(models, weights)):
        if isinstance(m, (AxisModel, VolumeModel)):
            m.weight = float(w)
            scorers.append(m)
        else:
            scorers.append(axis_model(m.to(dev).eval(), float(w), str(m.meta.get("name", f"model{k}"))))
    return ShellDetector([Member("dpa", "dpa", scorers, combine)], name=name, device=dev, **options)


def _member_calibration(m: MemberSpec) -> Calibration | None:
    return Calibration.from_dict(m.calibration.model_dump()) if m.calibration is not None else None


def detector_from_spec(spec: EnsembleSpec, base: Path, device: str | Any | None = None, batch_size: int | None = None,
                       bf16: bool | None = None) -> ShellDetector:
    """Open the model files of a spec (relative to ``base``) through the registry and build the detector."""
    from ..methods.registry import load_scorers, method_by_name
    from .scorer import device_for_rank

    dev = device_for_rank(str(device) if device is not None else None)
    members = []
    for ms in spec.members:
        method_by_name(ms.method)  # a clear error for an unknown method name
        scorers = []
        for e in ms.models:
            p = Path(e.path)
            for s in load_scorers(p if p.is_absolute() else base / p, dev):
                s.weight = float(e.weight)
                scorers.append(s)
        members.append(Member(ms.name or ms.method, ms.method, scorers, ms.combine, _member_calibration(ms), ms.weight))
    return ShellDetector(
        members, name=spec.name or "detector", member_combine=spec.member_combine,
        background_threshold=spec.background_threshold, calibration=resolve_calibration(spec, base),
        border=BorderRule.from_dict(spec.border.model_dump()),
        sample_rule=SampleRule.from_dict(spec.sample_rule.model_dump()), sample_combine=spec.sample_combine,
        batch_size=batch_size or spec.batch_size, bf16=spec.bf16 if bf16 is None else bf16, device=dev,
    )


def load_ensemble(
    path: str | os.PathLike, device: str | Any | None = None, batch_size: int | None = None, bf16: bool | None = None
) -> ShellDetector:
    """Open a detector YAML (model files relative to it; one-line MoodError on problems)."""
    path = Path(path)
    spec = read_spec(path)
    det = detector_from_spec(spec, path.parent, device, batch_size, bf16)
    det.name = det.name or path.stem
    tuned = spec.info.get("calibration", {}).get("tuned_on") if isinstance(spec.info.get("calibration"), dict) else None
    det.source = detector_source(path, det.name, tuned)
    return det


def detector_source(path: str | os.PathLike, name: str, tuned_on: dict | None) -> dict[str, Any]:
    """What a prediction record says about the detector: its file, the file's sha256, and what it was tuned on."""
    path = Path(path)
    return {"path": str(path.resolve()), "name": name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "tuned_on": tuned_on}


def single_file_detector(path: str | os.PathLike, device: str | Any | None = None, batch_size: int | None = None) -> ShellDetector:
    """One model file of any method as a detector, with the shell settings the file carries (e.g. a fitted
    histogram ``.npz`` holds its calibration); a file that carries none predicts uncalibrated."""
    from ..methods.registry import method_for_file
    from .scorer import device_for_rank

    entry = method_for_file(path)
    dev = device_for_rank(str(device) if device is not None else None)
    settings = entry.shell_settings(path)
    cal = settings.get("calibration")
    rule = settings.get("sample_rule")
    det = ShellDetector(
        [Member(entry.name, entry.name, entry.load(path, dev))], name=entry.name,
        background_threshold=settings.get("background_threshold", 0.0),
        calibration=Calibration.from_dict(cal) if cal else None,
        sample_rule=SampleRule.from_dict(rule) if rule else None, batch_size=batch_size, device=dev,
    )
    det.source = detector_source(path, entry.name, None)  # a lone model file is tuned on nothing
    return det


def spec_of(det: ShellDetector, spec: EnsembleSpec, info: dict[str, Any] | None = None) -> EnsembleSpec:
    """``spec`` with the fitted state of ``det`` (calibrations, member rule and weights, sample rule) written in."""
    data = spec.model_dump(mode="json")
    for md, m in zip(data["members"], det.members):
        md["calibration"] = m.calibration.to_dict() if m.calibration is not None else None
        md["weight"] = float(m.weight)
    data["member_combine"] = det.member_combine
    data["calibration"] = det.calibration.to_dict() if det.calibration is not None else None
    data["sample_rule"] = det.sample_rule.to_dict()
    data["sample_combine"] = det.sample_combine
    data["border"] = det.border.to_dict()
    if info is not None:
        data["info"] = {**data.get("info", {}), **info}
    return validate(EnsembleSpec, data, "detector")


# ============================================================================ calibration


def _volume_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    from ..volumes import list_volumes

    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        return [p] if p.is_file() else list_volumes(p)
    return [Path(s) for s in source]


@dataclass
class TuningSet:
    """A labelled set in the MOOD toy layout: volumes, their sample labels, and the pixel-label folder."""

    root: Path
    paths: list[Path]
    labels: list[int]
    pixel_dir: Path | None
    fingerprint: dict = field(default_factory=dict)


def tuning_set(val_dir: str | os.PathLike, labels_dir: str | os.PathLike | None = None) -> TuningSet:
    """Read a labelled validation set (``toy/`` + ``toy_label/sample/``, pixel labels in ``toy_label/pixel/``).

    Sample labels are parsed by the evaluator's own :func:`mood_dpa.evaluation.evaluate.read_sample_label`
    (one rule for the whole project)."""
    from ..evaluation.evaluate import read_sample_label
    from ..volumes import list_volumes

    val_dir = Path(val_dir)
    vol_dir = val_dir / "toy" if (val_dir / "toy").is_dir() else val_dir
    label_root = None
    for cand in (val_dir / "toy_label", val_dir.parent / "toy_label"):
        if cand.is_dir():
            label_root = cand
            break
    sample_dir = Path(labels_dir) if labels_dir is not None else (label_root / "sample" if label_root else None)
    if sample_dir is None or not sample_dir.is_dir():
        raise MoodError(f"{val_dir}: no sample labels found (expected toy_label/sample/<name>.txt); give --val-labels")
    paths = list_volumes(vol_dir)
    labels = []
    for p in paths:
        f = sample_dir / f"{p.name}.txt"
        if not f.is_file():
            raise MoodError(f"{f}: missing sample label for {p.name}")
        labels.append(read_sample_label(f))
    pixel_dir = label_root / "pixel" if label_root is not None and (label_root / "pixel").is_dir() else None
    return TuningSet(val_dir, paths, labels, pixel_dir, _fingerprint(val_dir, paths))


def _fingerprint(val_dir: Path, paths: Sequence[Path]) -> dict:
    """What a tuning set was, for later checks (``evaluate`` warns when it scores the same cases or
    volumes: :mod:`mood_dpa.inference.record`)."""
    from .record import manifest_sources

    out: dict[str, Any] = {"path": str(val_dir.resolve()), "cases": [p.name for p in paths]}
    manifest = val_dir / "manifest.csv"
    if manifest.is_file():
        out["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
        sources = manifest_sources(manifest)
        if sources:
            out["sources"] = sources  # the healthy volumes the set was made from (another seed shares them)
    return out


def _joint_sample(mask: Any, n: int, seed: int) -> np.ndarray:
    """Flat indices of a seeded uniform subsample (at most ``n``) of the voxels where ``mask`` is true."""
    m = mask.detach().reshape(-1).cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask).reshape(-1)
    idx = np.flatnonzero(m)
    if idx.size > n:
        idx = np.sort(idx[np.random.default_rng(seed).choice(idx.size, size=n, replace=False)])
    return idx


def member_rule_candidates(det: ShellDetector) -> list[tuple[str, tuple[float, ...] | None]]:
    """The member-combine rules calibrate tries: mean, max, the file's own weights (when not all equal)
    and each member emphasised ``EMPHASIS`` x (each level) over the others. Ties go to the earlier candidate."""
    k = len(det.map_members)
    out: list[tuple[str, tuple[float, ...] | None]] = [("mean", None), ("max", None)]
    own = tuple(float(m.weight) for m in det.map_members)
    if len(set(own)) > 1:
        out.append(("weighted", own))
    for level in EMPHASIS:
        for i in range(k):
            w = tuple(level if j == i else 1.0 for j in range(k))
            if w != own:
                out.append(("weighted", w))
    return out


def _describe(rule: str, weights: tuple[float, ...] | None) -> str:
    return rule if weights is None else f"weighted({','.join(f'{w:g}' for w in weights)})"


def calibrate_detector(
    det: ShellDetector,
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    seed: int = 0,
    samples_per_volume: int = DEFAULT_SAMPLES_PER_VOLUME,
    y_top: float = DEFAULT_Y_TOP,
    progress: bool = True,
    border_candidates: Sequence[BorderRule] = BORDER_CANDIDATES,
) -> dict[str, Any]:
    """Fit the calibrations on NORMAL volumes; with ``val_dir`` also choose the member rule and the sample rule.

    One member: the final calibration is fitted on the member's raw map (as version 1 did). Several
    members: each member's calibration is fitted on the same sampled normal voxels; on the tuning set
    (``val_dir`` ONLY) the member rule with the best pixel AP of the calibrated combined map (float16
    histogram AP, :mod:`mood_dpa.evaluation.metrics`) is chosen; then the final calibration of the
    combined map is fitted once on the normal samples. With pixel labels on the tuning set the border rule
    is chosen next among ``border_candidates`` (:func:`choose_border`; ``(OFF,)`` keeps it off), then the sample rule (on the border-damped maps). Returns a
    summary (stored in ``info``).
    """
    from ..progress import track
    from ..volumes import iter_volumes

    import torch

    start = time.perf_counter()
    map_members = det.map_members
    if not map_members:
        raise MoodError("this detector has sample-level members only (each carries its own calibration); "
                        "nothing to calibrate: predict with it as it is")
    paths = _volume_paths(normal_volumes)
    several = len(map_members) > 1
    for m in map_members:
        m.calibration = None
    per_member: list[list[np.ndarray]] = [[] for _ in map_members]
    items = iter_volumes(paths, prefetch=1)
    for k, (p, vol) in enumerate(track(items, "calibrating", total=len(paths)) if progress else items):
        if isinstance(vol, MoodError):
            raise vol
        raws = det.member_raw(vol.data)
        mask = det.foreground(vol.data) if det.background_threshold is not None else None
        vseed = seed * 1_000_003 + k
        if not several:
            per_member[0].append(sample_raw_scores(raws[0], mask, samples_per_volume, vseed))
            continue
        idx = _joint_sample(mask if mask is not None else torch.ones_like(raws[0], dtype=torch.bool), samples_per_volume, vseed)
        it = torch.as_tensor(idx, device=raws[0].device)
        for j, r in enumerate(raws):
            per_member[j].append(r.reshape(-1).index_select(0, it).double().cpu().numpy())
    info: dict[str, Any] = {
        "normal_volumes": len(paths),
        "samples": int(sum(s.size for s in per_member[0])),
        "seed": seed,
        "samples_per_volume": samples_per_volume,
    }
    tuning = tuning_set(val_dir, val_labels) if val_dir is not None else None
    if not several:
        det.calibration = fit_calibration(per_member[0], y_top=y_top)
    else:
        for m, s in zip(map_members, per_member):
            m.calibration = fit_calibration(s, y_top=y_top)
        # the calibrated member values of the SAME sampled voxels: any member rule's combined normal sample
        cal_samples = [torch.as_tensor(m.calibration.apply(np.concatenate(s)), dtype=torch.float64)  # type: ignore[union-attr]
                       for m, s in zip(map_members, per_member)]
        finite = torch.stack([torch.isfinite(torch.as_tensor(np.concatenate(s))) for s in per_member]).all(0)
        cal_samples = [c[finite] for c in cal_samples]

        def final_for(rule: str, weights) -> Calibration:
            return fit_calibration(combine_members([c.clone() for c in cal_samples], rule, weights).numpy(), y_top=y_top)

        candidates = member_rule_candidates(det)
        if tuning is not None:
            chosen, aps = _choose_member_rule(det, tuning, candidates, final_for, progress)
            info["member_rule_ap"] = {_describe(*c): round(a, 6) for c, a in zip(candidates, aps)}
        else:
            chosen = (det.member_combine, None)
        det.member_combine = chosen[0]
        if chosen[1] is not None:
            for m, w in zip(map_members, chosen[1]):
                m.weight = float(w)
        det.calibration = final_for(det.member_combine, [m.weight for m in map_members])
        info["member_combine"] = _describe(det.member_combine, chosen[1])
    info["raw_normal_max"] = float(det.calibration.xs[-1])
    if tuning is not None:
        if tuning.pixel_dir is not None:
            det.border, border_aps = choose_border(det, tuning, tuple(border_candidates), progress)
            info["border_ap"] = {r.describe(): round(a, 6) for r, a in zip(border_candidates, border_aps)}
        else:
            info["border_note"] = "no pixel labels on the tuning set: border rule left as it was"
        info["border"] = det.border.describe()
        rows, member_rows = [], []
        items = iter_volumes(tuning.paths, prefetch=1)
        for p, vol in track(items, "choosing the sample rule", total=len(tuning.paths)) if progress else items:
            if isinstance(vol, MoodError):
                raise vol
            rows.append(candidate_scores(det.calibrated(det.score_raw(vol.data), vol.data), CANDIDATE_RULES))
            member_rows.append(det.member_sample_scores(vol.data))
        rule, aps = choose_sample_rule(np.array(rows), tuning.labels, CANDIDATE_RULES)
        det.sample_rule = rule
        info["sample_rule_ap"] = {r.describe(): round(a, 6) for r, a in zip(CANDIDATE_RULES, aps)}
        if det.sample_members:
            map_scores = np.array(rows)[:, CANDIDATE_RULES.index(rule)]
            det.sample_combine, combine_aps = choose_sample_combine(map_scores, member_rows, tuning.labels)
            info["sample_combine_ap"] = {c: round(a, 6) for c, a in zip(SAMPLE_COMBINE_RULES, combine_aps)}
            info["sample_combine"] = det.sample_combine
        info["validation_volumes"] = len(tuning.paths)
        info["tuned_on"] = tuning.fingerprint
    info["sample_rule"] = det.sample_rule.describe()
    info["seconds"] = round(time.perf_counter() - start, 2)
    return info


def choose_sample_combine(map_scores: Sequence[float], member_scores: Sequence[Sequence[float]], labels: Sequence[int]
                          ) -> tuple[str, list[float]]:
    """The :data:`SAMPLE_COMBINE_RULES` entry with the best sample AP on the tuning set (ties: the earlier,
    ``map`` first). ``map_scores``: the chosen sample rule's score per volume; ``member_scores``: per volume,
    the sample-level members' scores. Returns (rule, AP of every rule)."""
    from ..evaluation.metrics import average_precision

    y = np.asarray(list(labels), np.int64)
    aps = []
    for rule in SAMPLE_COMBINE_RULES:
        scores = np.array([combine_sample_scores(float(s), list(m), rule) for s, m in zip(map_scores, member_scores)])
        aps.append(float(average_precision(scores, y)))
    best = int(np.argmax(np.round(aps, 12)))
    return SAMPLE_COMBINE_RULES[best], aps


def choose_border(det: ShellDetector, tuning: TuningSet, candidates: Sequence[BorderRule] = BORDER_CANDIDATES,
                  progress: bool = False) -> tuple[BorderRule, list[float]]:
    """The border rule with the best pixel AP (exact float16-histogram AP over the pooled voxels) of the
    detector's final map on the tuning set; ties go to the earlier candidate (``off`` first). Returns
    (rule, AP of every candidate). Each volume is scored once; the candidates only re-damp its map."""
    from ..evaluation.metrics import ScoreHistogram
    from ..progress import track
    from ..volumes import iter_volumes

    if tuning.pixel_dir is None:
        raise MoodError(f"{tuning.root}: choosing the border rule needs pixel labels (toy_label/pixel/)")
    hists = [ScoreHistogram() for _ in candidates]
    items = iter_volumes(tuning.paths, prefetch=1)
    for p, vol in track(items, "choosing the border rule", total=len(tuning.paths)) if progress else items:
        if isinstance(vol, MoodError):
            raise vol
        label = _pixel_label(tuning, p, vol.data.shape)
        raw = det.score_raw(vol.data)
        for h, rule in zip(hists, candidates):
            h.add(det.calibrated(raw, vol.data, border=rule).cpu().numpy(), label)
    aps = [float(h.ap()) for h in hists]
    best = int(np.argmax(np.round(aps, 12)))
    return candidates[best], aps


def _pixel_label(tuning: TuningSet, p: Path, shape) -> np.ndarray:
    from ..evaluation.evaluate import read_label_volume

    label_path = tuning.pixel_dir / p.name  # type: ignore[operator]
    if not label_path.is_file():
        raise MoodError(f"{label_path}: missing pixel label for {p.name}")
    label, lshape = read_label_volume(label_path)
    if tuple(lshape) != tuple(shape):
        raise MoodError(f"{label_path}: label shape {lshape} differs from the volume's {tuple(shape)}")
    return label


def _choose_member_rule(det: ShellDetector, tuning: TuningSet, candidates, final_for, progress: bool):
    """Pixel AP (exact float16-histogram AP over the pooled voxels) of every candidate on the tuning set."""
    from ..evaluation.evaluate import read_label_volume
    from ..evaluation.metrics import ScoreHistogram
    from ..progress import track
    from ..volumes import iter_volumes

    if tuning.pixel_dir is None:
        raise MoodError(f"{tuning.root}: choosing how members combine needs pixel labels (toy_label/pixel/)")
    finals = [final_for(rule, w if w is not None else [m.weight for m in det.map_members]) for rule, w in candidates]
    hists = [ScoreHistogram() for _ in candidates]
    items = iter_volumes(tuning.paths, prefetch=1)
    for p, vol in track(items, "choosing the member rule", total=len(tuning.paths)) if progress else items:
        if isinstance(vol, MoodError):
            raise vol
        label_path = tuning.pixel_dir / p.name
        if not label_path.is_file():
            raise MoodError(f"{label_path}: missing pixel label for {p.name}")
        label, shape = read_label_volume(label_path)
        if tuple(shape) != tuple(vol.data.shape):
            raise MoodError(f"{label_path}: label shape {shape} differs from the volume's {vol.data.shape}")
        maps = det.member_maps(det.member_raw(vol.data))
        for h, (rule, w), cal in zip(hists, candidates, finals):
            combined = combine_members([m.clone() for m in maps], rule, w if w is not None else [m.weight for m in det.map_members])
            h.add(det.calibrated(combined, vol.data, cal).cpu().numpy(), label)
    aps = [float(h.ap()) for h in hists]
    best = int(np.argmax(np.round(aps, 12)))
    return candidates[best], aps


def calibrate_ensemble(
    path: str | os.PathLike,
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    samples_per_volume: int = DEFAULT_SAMPLES_PER_VOLUME,
    y_top: float = DEFAULT_Y_TOP,
    progress: bool = True,
    border_candidates: Sequence[BorderRule] = BORDER_CANDIDATES,
) -> dict[str, Any]:
    """Calibrate a detector file (see :func:`calibrate_detector`) and write the result into it once, atomically."""
    path = Path(path)
    spec = read_spec(path)
    det = detector_from_spec(spec, path.parent, device=device, batch_size=batch_size)
    info = calibrate_detector(
        det, normal_volumes, val_dir=val_dir, val_labels=val_labels, seed=seed,
        samples_per_volume=samples_per_volume, y_top=y_top, progress=progress, border_candidates=border_candidates,
    )
    write_spec(path, spec_of(det, spec, {"calibration": info}))
    return info


def fit_ensemble(
    path: str | os.PathLike,
    model_files: Sequence[str | os.PathLike],
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    weights: Sequence[float] | None = None,
    combine: str = "mean",
    background_threshold: float | None = 0.0,
    device: str | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    groups: Sequence[str] | None = None,
    border_candidates: Sequence[BorderRule] = BORDER_CANDIDATES,
) -> ShellDetector:
    """Build the detector of ``model_files`` in memory, calibrate it on ``normal_volumes`` (choosing the
    member and sample rules on ``val_dir``), write its YAML once, and return it ready for
    :func:`mood_dpa.inference.predict.predict_folder`."""
    path = Path(path)
    spec = build_spec(path, model_files, weights, combine=combine, background_threshold=background_threshold,
                      batch_size=batch_size, check=False, groups=groups)
    det = detector_from_spec(spec, path.parent.resolve(), device=device, batch_size=batch_size)
    info = calibrate_detector(det, normal_volumes, val_dir=val_dir, val_labels=val_labels, seed=seed, progress=progress,
                              border_candidates=border_candidates)
    write_spec(path, spec_of(det, spec, {"calibration": info}))
    return det
