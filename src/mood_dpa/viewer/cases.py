"""Which cases the browser shows, where each one's files are, and what the case list says about them.

A case is one input volume (``VOLUMES/<name>.nii.gz``) with, per method, the MOOD-layout prediction
beside it in that method's folder (``PRED/<name>.nii.gz`` voxel scores, ``PRED/<name>.nii.gz.txt``
sample score) and, when labels are given, the MOOD toy-label files (``pixel/<name>.nii.gz``,
``sample/<name>.nii.gz.txt``). Files are paired by name, as the MOOD evaluator pairs them; a missing
or unreadable prediction is shown as missing (the evaluator would count it as zeros) and said once.

Per case and method the list shows the sample score, the per-case AP (that case's voxels alone: exact
AP over float16 codes, :class:`mood_dpa.evaluation.metrics.ScoreHistogram`, the evaluator's reading) and
whether the hottest region hits the anomaly (:func:`mood_dpa.evaluation.metrics.case_hit`), so a user
can sort by them and jump to the worst misses.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.synth.layout import read_manifest
from ..errors import MoodError
from ..evaluation.evaluate import (
    case_name,
    read_label_volume,
    read_prediction_volume,
    read_sample_label,
    resolve_label_dir,
)
from ..evaluation.metrics import ScoreHistogram, case_hit, float16_codes
from ..volumes import list_volumes, read_volume


@dataclass(frozen=True)
class Method:
    """One prediction folder shown in the browser, under a display name."""

    name: str
    folder: Path


@dataclass
class CaseFiles:
    name: str
    volume: Path
    kind: str = ""
    pixel_label: Path | None = None
    sample_label: Path | None = None


@dataclass
class CaseArrays:
    """One case read at full resolution: volume, label (or None) and per method the float16 scores (or None)."""

    volume: np.ndarray
    label: np.ndarray | None
    scores: list[np.ndarray | None]
    facts: dict = field(default_factory=dict)


def parse_method(text: str) -> Method:
    """``NAME=FOLDER`` or ``FOLDER`` (the name is then the folder's name)."""
    name, sep, folder = text.partition("=")
    if not sep:
        folder, name = text, Path(text.rstrip("/\\")).name
    if not name or not folder:
        raise MoodError(f"--pred {text!r}: expected FOLDER or NAME=FOLDER")
    path = Path(folder)
    if not path.is_dir():
        raise MoodError(f"--pred {text!r}: {path} is not a folder")
    return Method(name, path)


def find_manifest(labels: Path | None) -> Path | None:
    """``manifest.csv`` of a ``mood-dpa synth`` set beside the labels (the set's root or its toy_label's parent)."""
    if labels is None:
        return None
    for cand in (labels / "manifest.csv", labels.parent / "manifest.csv", labels.parent.parent / "manifest.csv"):
        if cand.is_file():
            return cand
    return None


def _label_dirs(labels: Path | None) -> tuple[Path | None, Path | None]:
    """(pixel label folder, sample label folder) of a MOOD toy-label layout; the folder itself holds pixel labels otherwise."""
    if labels is None:
        return None, None
    if not labels.is_dir():
        raise MoodError(f"--labels {labels}: not a folder")

    pixel, sample = resolve_label_dir(labels, "pixel"), resolve_label_dir(labels, "sample")
    if sample == labels and pixel == labels:  # a plain folder of masks
        return labels, None
    return (pixel if pixel.name == "pixel" else None), (sample if sample.name == "sample" else None)


def find_cases(volumes: str | os.PathLike, labels: str | os.PathLike | None = None,
               manifest: str | os.PathLike | None = None) -> list[CaseFiles]:
    """Every volume of the folder as a case, with its label files and its kind (manifest, else from the label)."""
    files = list_volumes(volumes)
    seen: dict[str, Path] = {}
    for path in files:  # cases are named by file (a synth set holds several cases of one volume id)
        other = seen.setdefault(case_name(path.name), path)
        if other != path:
            raise MoodError(f"{other.name} and {path.name} are the same case {case_name(path.name)!r}; rename one of them")
    labels = None if labels is None else Path(labels)
    pixel_dir, sample_dir = _label_dirs(labels)
    kinds: dict[str, str] = {}
    if manifest is not None:
        kinds = {case_name(r["case"]): r["kind"] for r in read_manifest(manifest)}
    cases = []
    for path in files:
        name = case_name(path.name)
        pixel = None if pixel_dir is None else pixel_dir / path.name
        sample = None if sample_dir is None else sample_dir / f"{path.name}.txt"
        cases.append(CaseFiles(name, path, kinds.get(name, ""), pixel if pixel and pixel.is_file() else None,
                               sample if sample and sample.is_file() else None))
    return cases


def choose_cases(cases: list[CaseFiles], names: Sequence[str] | None = None, limit: int | None = None) -> list[CaseFiles]:
    """The named cases (in the given order), else at most ``limit`` cases taken in turn from each kind."""
    if names:
        by_name = {c.name: c for c in cases}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise MoodError(f"--cases: no case named {unknown[0]!r} (cases are the volume file names without .nii.gz)")
        return [by_name[n] for n in dict.fromkeys(names)]
    if limit is None or limit >= len(cases):
        return list(cases)
    groups: dict[str, list[CaseFiles]] = {}
    for c in cases:
        groups.setdefault(c.kind, []).append(c)
    chosen: list[CaseFiles] = []
    while len(chosen) < limit:
        for group in groups.values():
            if group and len(chosen) < limit:
                chosen.append(group.pop(0))
    order = {c.name: i for i, c in enumerate(cases)}
    return sorted(chosen, key=lambda c: order[c.name])


def check_predictions(cases: Sequence[CaseFiles], methods: Sequence[Method], warn: Callable[[str], None]) -> None:
    """Refuse a prediction folder that holds none of the cases (a wrong folder); say how many each one lacks."""
    for m in methods:
        missing = [c.name for c in cases if not (m.folder / c.volume.name).is_file()]
        if len(missing) == len(cases):
            raise MoodError(f"--pred {m.folder}: no prediction for any of the {len(cases)} cases (expected files named "
                            f"like {cases[0].volume.name})")
        if missing:
            warn(f"{m.name}: no prediction for {len(missing)} of {len(cases)} cases (e.g. {missing[0]}); shown as missing")


def _sample_score(path: Path) -> float:
    try:
        with open(path, errors="replace") as fh:
            value = float(fh.readline().strip())
    except (OSError, ValueError):
        return math.nan
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else math.nan


def read_case(case: CaseFiles, methods: Sequence[Method], warn: Callable[[str], None]) -> CaseArrays:
    """Read one case at full resolution and compute its list facts (kind, sample label, per method: score, AP, hit)."""
    volume = read_volume(case.volume).data
    label = None
    if case.pixel_label is not None:
        label, shape = read_label_volume(case.pixel_label)
        label = np.asarray(label).reshape(shape[:3]) if len(shape) == 4 and shape[3] == 1 else np.asarray(label)
        if label.shape != volume.shape:
            warn(f"{case.name}: label shape {label.shape} differs from the volume's {volume.shape}; label not shown")
            label = None
    sample_label = read_sample_label(case.sample_label) if case.sample_label is not None else None
    if sample_label is None and label is not None:
        sample_label = int(label.any())
    kind = case.kind or ({0: "normal", 1: "anomalous"}.get(sample_label, "") if sample_label is not None else "")
    scores, per_method = [], []
    for m in methods:
        pred_path = m.folder / case.volume.name
        pred = None
        if pred_path.is_file():
            try:
                pred = np.asarray(read_prediction_volume(pred_path))
            except Exception as exc:  # noqa: BLE001 - an unreadable prediction is shown as missing
                warn(f"{case.name}: cannot read {pred_path} ({type(exc).__name__}); shown as missing")
            if pred is not None and pred.ndim == 4 and pred.shape[3] == 1:
                pred = pred[..., 0]
            if pred is not None and pred.shape != volume.shape:
                warn(f"{case.name}: {m.name} prediction shape {pred.shape} differs from the volume's {volume.shape}; "
                     "shown as missing")
                pred = None
        if pred is not None:
            pred = float16_codes(pred, what=str(pred_path)).view(np.float16)  # MOOD's reading; NaN refused
        scores.append(pred)
        txt = m.folder / f"{case.volume.name}.txt"
        fact = {"score": _sample_score(txt) if txt.is_file() else math.nan, "ap": math.nan, "hit": None,
                "missing": pred is None}
        if pred is not None and label is not None and label.any():
            fact["ap"] = ScoreHistogram().add(pred, label).ap()
            fact["hit"] = case_hit(pred, label)
        per_method.append(fact)
    facts = {"name": case.name, "kind": kind, "label": sample_label, "shape": list(volume.shape), "methods": per_method}
    return CaseArrays(volume, label, scores, facts)
