"""Opening detectors: a detector file (or a lone model file) -> a runnable :class:`~.detector.ShellDetector`.

This is the only module of the shell that imports the method registry (:mod:`mood_dpa.methods.registry`):
every model file is opened through the registry entry of the kind it declares, and each member's files
must be of the member's own method (a ``dpa`` member that lists a segmenter file is refused).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import MoodError
from ..methods.registry import method_by_name, method_for_file, model_meta
from ..scoring.calibration import Calibration
from ..scoring.device import device_for_rank
from ..scoring.sample_rules import SampleRule
from .detector import Member, ShellDetector
from .detector_file import (
    DetectorSpec,
    build_spec,
    read_spec,
    resolve_calibration,
    write_spec,
)

DETECTOR_SUFFIXES = (".yaml", ".yml")


def member_files(spec_member: Any, base: Path) -> list[tuple[Path, float]]:
    """One member's model files (relative paths resolved against ``base``) and their weights."""
    return [(Path(e.path) if Path(e.path).is_absolute() else base / e.path, float(e.weight)) for e in spec_member.models]


def member_scorers(spec_member: Any, base: Path, device: Any) -> list:
    """Raw scorers of one member's model files (relative to ``base``), each checked against the member's method."""
    method_by_name(spec_member.method)  # a clear error for an unknown method name
    scorers = []
    for path, weight in member_files(spec_member, base):
        entry = method_for_file(path)
        if entry.name != spec_member.method:
            raise MoodError(f"{path}: a {entry.name} model file in member {spec_member.name or spec_member.method!r}, "
                            f"whose method is {spec_member.method}; list it in a member of its own method")
        for s in entry.load(path, device):
            s.weight = weight
            scorers.append(s)
    return scorers


def detector_from_spec(spec: DetectorSpec, base: Path, device: str | Any | None = None, batch_size: int | None = None,
                       bf16: bool | None = None) -> ShellDetector:
    """Open the model files of a spec (relative to ``base``) through the registry and build the detector."""
    dev = device_for_rank(str(device) if device is not None else None)
    members = [Member(ms.name or ms.method, ms.method, member_scorers(ms, base, dev), ms.combine, ms.calibration, ms.weight,
                      tuple(ms.flips), files=tuple(member_files(ms, base)))
               for ms in spec.members]
    return ShellDetector(
        members, name=spec.name or "detector", member_combine=spec.member_combine,
        background_threshold=spec.background_threshold, calibration=resolve_calibration(spec, base),
        border=spec.border, sample_rule=spec.sample_rule, sample_combine=spec.sample_combine,
        standardiser=spec.standardise, batch_size=batch_size or spec.batch_size, bf16=spec.bf16 if bf16 is None else bf16, device=dev,
    )


def detector_source(path: str | os.PathLike, name: str, tuned_on: dict | None) -> dict[str, Any]:
    """What a prediction record says about the detector: its file, the file's sha256, and what it was tuned on."""
    path = Path(path)
    return {"path": str(path.resolve()), "name": name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "tuned_on": tuned_on}


def load_detector_file(path: str | os.PathLike, device: str | Any | None = None, batch_size: int | None = None,
                       bf16: bool | None = None) -> ShellDetector:
    """Open a detector file (model files relative to it; one-line MoodError on problems)."""
    path = Path(path)
    spec = read_spec(path)
    det = detector_from_spec(spec, path.parent, device, batch_size, bf16)
    det.name = det.name or path.stem
    det.source = detector_source(path, det.name, spec.tuned_on)
    return det


def single_file_detector(path: str | os.PathLike, device: str | Any | None = None, batch_size: int | None = None) -> ShellDetector:
    """One model file of any method as a detector, with the shell settings the file carries (e.g. a
    ``baseline fit`` histogram ``.npz`` holds its calibration); a file that carries none predicts uncalibrated."""
    entry = method_for_file(path)
    dev = device_for_rank(str(device) if device is not None else None)
    settings = entry.shell_settings(path)
    cal = settings.get("calibration")
    rule = settings.get("sample_rule")
    det = ShellDetector(
        [Member(entry.name, entry.name, entry.load(path, dev), files=((Path(path), 1.0),))],
        name=entry.name,
        background_threshold=settings.get("background_threshold", 0.0),
        calibration=Calibration.from_dict(cal) if cal else None,
        sample_rule=SampleRule.from_dict(rule) if rule else None, batch_size=batch_size, device=dev,
    )
    det.source = detector_source(path, entry.name, None)  # a lone model file is tuned on nothing
    return det


def store_shell_settings(path: str | os.PathLike, settings: dict[str, Any]) -> None:
    """Write the shell settings a lone model file carries (only methods whose files can hold them)."""
    method_for_file(path).store_shell_settings(path, settings)


def load_detector(path: str | os.PathLike, device: str | None = None, batch_size: int | None = None) -> ShellDetector:
    """Open what ``predict --model`` takes: a detector file (``.yaml``) or a lone model file (e.g. a
    baseline ``.npz``). ``device`` (cpu, cuda, cuda:N; None = automatic) and ``batch_size`` (slices per
    forward pass; None = the file's own) go to the shell."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such model file")
    if batch_size is not None and batch_size < 1:
        raise MoodError("--batch-size must be at least 1")
    if path.suffix.lower() in DETECTOR_SUFFIXES:
        return load_detector_file(path, device, batch_size)
    if path.suffix.lower() == ".npz":
        return single_file_detector(path, device, batch_size)
    raise MoodError(f"{path}: unknown model file type {path.suffix or '(none)'}; expected a baseline .npz or a detector .yaml "
                    "(a trained .pt model goes into a detector file: mood-dpa ensemble MODEL.pt -o det.yaml, then calibrate it)")


def group_members(model_files: Sequence[str | os.PathLike], weights: Sequence[float] | None = None,
                  groups: Sequence[str] | None = None, check: bool = True) -> list[tuple[str, str, list[tuple[Path, float]]]]:
    """Model files -> members [(name, method, [(file, weight), ...])]: one member per method, in order of
    first appearance, or by ``groups`` (one member name per file: e.g. a 2-D and a 3-D segmenter as two
    members, each calibrated on its own). ``check`` opens every file once on the CPU, so a wrong path or
    file fails here, not at prediction time."""
    files = [Path(f) for f in model_files]
    if not files:
        raise MoodError("a detector needs at least one model file")
    weights = [1.0] * len(files) if weights is None else [float(w) for w in weights]
    if len(weights) != len(files):
        raise MoodError(f"{len(files)} model files but {len(weights)} weights")
    if groups is not None and len(groups) != len(files):
        raise MoodError(f"{len(files)} model files but {len(groups)} member names")
    members: dict[str, tuple[str, str, list[tuple[Path, float]]]] = {}
    for k, (f, w) in enumerate(zip(files, weights)):
        entry = method_for_file(f)
        if check:
            entry.load(f, "cpu")
        key = groups[k] if groups is not None else entry.name
        member = members.setdefault(key, (key, entry.name, []))
        if member[1] != entry.name:
            raise MoodError(f"member {key!r} mixes methods {member[1]} and {entry.name} ({f})")
        member[2].append((f, w))
    return list(members.values())


def write_detector_file(path: str | os.PathLike, model_files: Sequence[str | os.PathLike], weights: Sequence[float] | None = None,
                        *, groups: Sequence[str] | None = None, check: bool = True, **options: Any) -> Path:
    """Write a new (uncalibrated) detector file over ``model_files``, grouped into members by method;
    ``options`` as :func:`~.detector_file.build_spec`."""
    return write_spec(path, build_spec(path, group_members(model_files, weights, groups, check), **options))


def gives_voxel_map(path: str | os.PathLike) -> bool:
    """Whether a detector file (any member of a map method) or a lone model file gives a voxel map."""
    path = Path(path)
    if path.suffix.lower() in DETECTOR_SUFFIXES:
        return any(method_by_name(m.method).voxel_map for m in read_spec(path).members)
    return method_for_file(path).voxel_map


def seen_kinds(path: str | os.PathLike) -> tuple[str, ...]:
    """The evaluation kinds whose family any model of a detector (or lone model file) synthesised in training:
    the "seen" marks of every table (:meth:`mood_dpa.methods.registry.MethodEntry.seen_kinds`)."""
    path = Path(path)
    if path.suffix.lower() in DETECTOR_SUFFIXES:
        spec = read_spec(path)
        files = [Path(e.path) if Path(e.path).is_absolute() else path.parent / e.path for m in spec.members for e in m.models]
    else:
        files = [path]
    kinds: list[str] = []
    for f in files:
        kinds += [k for k in method_for_file(f).seen_kinds(model_meta(f)) if k not in kinds]
    return tuple(kinds)
