"""The detector file: a YAML that lists model files of any methods and every shell setting fitted on them.

Why one file: ``predict``, ``calibrate``, ``submission`` and the challenge container all take a detector
as ONE path; the file carries what the shell needs (members, rules, calibrations) and where its numbers
came from (``info``). Paths are relative to the file, so a folder of models moves as a whole.

The format (version 2; ``format: mood-dpa/detector``, files written before read ``mood-dpa/ensemble``)::

    format: mood-dpa/detector
    version: 2
    name: brain_pixel
    members:
      - name: dpa
        method: dpa               # the registry's method name (mood_dpa.methods.registry)
        models:                   # one model file per axis, or any number
          - {path: axis0/model.pt, weight: 1.0}
          - {path: axis1/model.pt, weight: 1.0}
        combine: mean             # mean | max | mean_covered (mood_dpa.scoring.combine)
        flips: [0]                # test-time flips: the map is also scored mirrored along these axes, and averaged
        calibration: {...}        # this member's raw -> [0, 1]; null with one member
        weight: 1.0               # used by member_combine: weighted
      - name: volume-histogram    # a sample-level member: no voxel map, one score per volume
        method: volume-histogram
        models: [{path: volhist.npz, weight: 1.0}]
    member_combine: mean          # mean | max | weighted (chosen on the tuning set by `calibrate --val`)
    background_threshold: 0.0     # voxels <= this score 0, all others >= 2^-14; null = no mask
    border: {width: 0, factor: 1.0}   # mood_dpa.scoring.border; width 0 = off (a file without it reads as off)
    calibration:                  # final raw -> [0, 1] (mood_dpa.scoring.calibration); a mapping,
      kind: quantile-log-tail     # or a path to a YAML/JSON file holding one; null = uncalibrated
      xs: [...]
      ys: [...]
      tail_scale: 0.123
    sample_rule: {kind: topk, fraction: 0.0001, sigma: 1.0}   # mood_dpa.scoring.sample_rules
    sample_combine: map           # map | max | mean: the sample rule's score with the sample-level members'
    standardise: null             # or {percentiles: [...], landmarks: [...]}: map every volume's foreground
                                  # intensities onto these landmarks first (mood_dpa.scoring.standardise)
    batch_size: null              # slices per forward pass; null = automatic
    bf16: false                   # bf16 autocast on CUDA
    info: {...}                   # provenance: what calibration was fitted on, what was tuned on (tuned_on)

Version-1 files (``models:`` + ``combine:`` at the top) are read as one DPA member. The rule fields
validate straight into the runtime classes (:class:`~mood_dpa.scoring.calibration.Calibration`,
:class:`~mood_dpa.scoring.sample_rules.SampleRule`, :class:`~mood_dpa.scoring.border.BorderRule`), and
every rule name is checked against the tuple the runtime uses, so the file and the code cannot drift.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import yaml
from pydantic import Field, PlainSerializer, PlainValidator, field_validator

from ..atomic import write_text
from ..config import StrictModel, read_yaml, validate
from ..errors import MoodError
from ..scoring.border import BorderRule
from ..scoring.calibration import Calibration
from ..scoring.combine import COMBINE_RULES
from ..scoring.sample_rules import SampleRule
from ..scoring.standardise import Standardiser
from .detector import MEMBER_RULES, SAMPLE_COMBINE_RULES

FORMAT = "mood-dpa/detector"
#: the format name of files written before the detector file had one name
OLD_FORMATS = ("mood-dpa/ensemble",)
VERSION = 2


def _runtime(cls: type) -> Any:
    """A field type that validates a mapping into the runtime class ``cls`` (its ``from_dict``, unknown keys
    refused) and writes it back with its ``to_dict``."""
    fields = {f.name for f in dataclasses.fields(cls)}

    def parse(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        try:
            return cls.from_dict(value)
        except MoodError as exc:
            raise ValueError(str(exc)) from None

    return Annotated[cls, PlainValidator(parse), PlainSerializer(lambda v: v.to_dict())]


CalibrationField = _runtime(Calibration)
SampleRuleField = _runtime(SampleRule)
BorderField = _runtime(BorderRule)
StandardiseField = _runtime(Standardiser)


class ModelEntry(StrictModel):
    path: str
    weight: float = Field(1.0, gt=0)


class MemberSpec(StrictModel):
    name: str = ""
    method: str = "dpa"
    models: list[ModelEntry] = Field(min_length=1)
    combine: Literal[COMBINE_RULES] = "mean"  # type: ignore[valid-type]
    calibration: CalibrationField | None = None  # type: ignore[valid-type]
    weight: float = Field(1.0, gt=0)
    flips: list[int] = Field(default_factory=list)  # test-time flips: axes the map is also scored mirrored along

    @field_validator("flips")
    @classmethod
    def _axes(cls, v: list[int]) -> list[int]:
        if any(a not in (0, 1, 2) for a in v) or len(set(v)) != len(v):
            raise ValueError("flips: distinct axes among 0, 1, 2")
        return v


class DetectorSpec(StrictModel):
    """A detector file in memory (see the module docstring)."""

    format: Literal[(FORMAT, *OLD_FORMATS)] = FORMAT  # type: ignore[valid-type]
    version: int = VERSION
    name: str = ""
    members: list[MemberSpec] = Field(min_length=1)
    member_combine: Literal[MEMBER_RULES] = "mean"  # type: ignore[valid-type]
    background_threshold: float | None = 0.0
    border: BorderField = Field(default_factory=BorderRule)  # type: ignore[valid-type]  # absent (older files): off
    calibration: CalibrationField | str | None = None  # type: ignore[valid-type]
    sample_rule: SampleRuleField = Field(default_factory=SampleRule)  # type: ignore[valid-type]
    sample_combine: Literal[SAMPLE_COMBINE_RULES] = "map"  # type: ignore[valid-type]
    standardise: StandardiseField | None = None  # type: ignore[valid-type]  # absent (older files): none
    batch_size: int | None = Field(None, ge=1)  # None: automatic (ShellDetector._auto_batch)
    bf16: bool = False
    info: dict[str, Any] = Field(default_factory=dict)

    @property
    def tuned_on(self) -> dict | None:
        """What ``calibrate --val`` chose the rules on (``info.calibration.tuned_on``), or None."""
        cal = self.info.get("calibration")
        return cal.get("tuned_on") if isinstance(cal, dict) else None


def _upgrade_v1(data: dict) -> dict:
    """A version-1 file (top-level ``models`` + ``combine``, DPA only) as one member of version 2."""
    data = dict(data)
    member = {"name": "dpa", "method": "dpa", "models": data.pop("models", None)}
    if "combine" in data:
        member["combine"] = data.pop("combine")
    data["members"] = [member]
    data["version"] = VERSION
    return data


def read_spec(path: str | os.PathLike) -> DetectorSpec:
    """Read and check a detector file (one-line MoodError on any problem)."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such detector file")
    data = read_yaml(path)
    if data.get("format") not in (None, FORMAT, *OLD_FORMATS):
        raise MoodError(f"{path}: not a mood-dpa detector file (format {data.get('format')!r})")
    version = data.get("version", 1)
    if isinstance(version, int) and version > VERSION:
        raise MoodError(f"{path}: detector file version {version} is newer than this mood-dpa reads ({VERSION})")
    if "members" not in data and (version == 1 or "models" in data):
        data = _upgrade_v1(data)
    return validate(DetectorSpec, data, str(path))


def write_spec(path: str | os.PathLike, spec: DetectorSpec) -> Path:
    """Atomically write a detector file (floats keep their exact repr, so a round trip is exact)."""
    data = spec.model_dump(mode="json")
    data["format"] = FORMAT
    return write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))


def resolve_calibration(spec: DetectorSpec, base: Path) -> Calibration | None:
    """The detector's final calibration (inline, or read from the file it names, relative to ``base``)."""
    c = spec.calibration
    if c is None or isinstance(c, Calibration):
        return c
    p = (base / c) if not Path(c).is_absolute() else Path(c)
    d = read_yaml(p)  # JSON is YAML
    return Calibration.from_dict(d.get("calibration", d))


def relative_path(f: Path, base: Path) -> str:
    """``f`` relative to ``base`` (POSIX form), or absolute when it is on another drive."""
    fa = f.resolve()
    try:
        return Path(os.path.relpath(fa, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return str(fa)


def build_spec(
    path: str | os.PathLike,
    members: Sequence[tuple[str, str, Sequence[tuple[str | os.PathLike, float]]]],
    *,
    combine: str = "mean",
    member_combine: str = "mean",
    background_threshold: float | None = 0.0,
    batch_size: int | None = None,
    bf16: bool = False,
    name: str | None = None,
) -> DetectorSpec:
    """The spec of a new detector file at ``path`` with ``members`` = [(member name, method, [(model file,
    weight), ...]), ...]; model paths are stored relative to the file's folder. Grouping model files
    into members by the kind each file declares is the loader's job (:func:`mood_dpa.inference.loading.group_members`)."""
    path = Path(path)
    base = path.parent.resolve()
    return validate(
        DetectorSpec,
        {
            "name": name if name is not None else path.name.split(".")[0],
            "members": [{"name": key, "method": method, "combine": combine,
                         "models": [{"path": relative_path(Path(f), base), "weight": float(w)} for f, w in files]}
                        for key, method, files in members],
            "member_combine": member_combine,
            "background_threshold": background_threshold,
            "batch_size": batch_size,
            "bf16": bf16,
        },
        str(path),
    )
