"""The prediction record (provenance): which detector wrote a prediction folder and what it was tuned on, and the
check ``evaluate`` runs with it (is the evaluated label set the detector's own tuning set?).

Why: ``calibrate --val`` chooses the member rule, the sample rule and how sample-level members join on
a labelled tuning set; scoring the same cases afterwards reports the best of several candidates picked
on the test cases themselves (an optimistic AP). The detector file records its tuning set
(``info.calibration.tuned_on``: folder, case names, manifest sha256, source volumes); ``predict``
copies that, with the detector's path and sha256, into ``OUT/.mood-dpa-predict.json`` (one entry per
task; hidden, and ignored by the MOOD evaluator, which pairs files by the label names); ``evaluate``
reads it and warns when the label set overlaps the tuning set:

* the same manifest (sha256 of ``manifest.csv``), or else
* shared SOURCE volumes (the manifest's ``source`` column of both sets, when both have one: another
  ``synth`` seed on the same volumes still shares every normal copy and every host anatomy), or else
* shared case names (when either set has no source column).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_text
from ..errors import MoodError
from .mood import case_name, manifest_sha256, manifest_sources

RECORD_NAME = ".mood-dpa-predict.json"
RECORD_FORMAT = "mood-dpa/predict-record"


def task_files(names: Sequence[str], task: str) -> list[str]:
    """The output files of ``task`` for input files ``names``: the same name (pixel) or ``<name>.txt`` (sample)."""
    return sorted(n if task == "pixel" else f"{n}.txt" for n in names)


def write_predict_record(out_dir: str | os.PathLike, source: dict[str, Any], tasks: Sequence[str], in_dir: str | os.PathLike | None,
                         names: Sequence[str] = ()) -> Path:
    """Add (or replace) this run's entry per task in ``OUT/.mood-dpa-predict.json``, atomically: the detector,
    the input folder and every output file it writes (``names``: the input file names); other tasks'
    entries (e.g. a sample run into the same folder by another detector) are kept."""
    path = Path(out_dir) / RECORD_NAME
    record = read_predict_record(out_dir) or {}
    entries = dict(record.get("tasks", {})) if isinstance(record.get("tasks"), dict) else {}
    for task in tasks:
        entries[task] = {"detector": source, "input": str(Path(in_dir).resolve()) if in_dir is not None else None,
                         "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": task_files(names, task)}
    return write_text(path, json.dumps({"format": RECORD_FORMAT, "version": 1, "tasks": entries}, indent=2) + "\n")


def read_predict_record(pred_dir: str | os.PathLike) -> dict | None:
    """The record of a prediction folder, or None when there is none (or it is unreadable: it is advisory)."""
    path = Path(pred_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RECORD_FORMAT else None


def earlier_outputs(out_dir: str | os.PathLike, source: dict[str, Any], tasks: Sequence[str], names: Sequence[str],
                    replace: bool) -> list[Path]:
    """The files an earlier ``predict`` wrote into ``out_dir`` for ``tasks`` that this run does not rewrite (to
    be removed, so the folder holds one run's outputs only). Another detector's outputs are refused unless
    ``replace``: one folder, one detector per task (the record could not say which file is whose)."""
    record = read_predict_record(out_dir) or {}
    entries = record.get("tasks") if isinstance(record.get("tasks"), dict) else {}
    stale: list[Path] = []
    for task in tasks:
        entry = entries.get(task)
        if not isinstance(entry, dict):
            continue
        before = entry.get("detector") or {}
        if before.get("sha256") != source.get("sha256") and not replace:
            raise MoodError(f"{out_dir}: holds {task} predictions of another detector ({before.get('path', '?')}, written "
                            f"{entry.get('written', '?')}); one folder takes one detector's predictions: choose another "
                            "-o, or pass --replace to remove those first")
        keep = set(task_files(names, task))
        stale += [Path(out_dir) / f for f in entry.get("files", []) if f not in keep and "/" not in f and f != RECORD_NAME]
    return [p for p in stale if p.is_file()]


def tuning_overlap(tuned_on: dict | None, label_names: Sequence[str], manifest: Path | None) -> str | None:
    """Why the evaluated set overlaps the tuning set (a short reason), or None when it does not."""
    if not isinstance(tuned_on, dict):
        return None
    sha = manifest_sha256(manifest) if manifest is not None else None
    if sha is not None and sha == tuned_on.get("manifest_sha256"):
        return "the same manifest.csv (sha256)"
    tuned_sources, sources = tuned_on.get("sources"), manifest_sources(manifest) if manifest is not None else None
    if tuned_sources and sources:
        shared = sorted(set(tuned_sources) & set(sources))
        if shared:
            if shared[0].startswith("sha256:"):
                return f"{len(shared)} of its {len(sources)} source volumes (the same volume content)"
            return f"{len(shared)} of its {len(sources)} source volumes ({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''})"
        return None
    cases = {case_name(str(c)) for c in tuned_on.get("cases", [])}
    shared = sorted(cases & {case_name(n) for n in label_names})
    if shared:
        return f"{len(shared)} of its {len(label_names)} case names ({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''})"
    return None


def tuning_warning(pred_dir: str | os.PathLike, task: str, label_names: Sequence[str], manifest: Path | None) -> tuple[str | None, dict | None]:
    """(warning or None, the record's entry for ``task`` or None) for ``evaluate``."""
    record = read_predict_record(pred_dir)
    entry = record.get("tasks", {}).get(task) if record else None
    if not isinstance(entry, dict):
        return None, None
    det = entry.get("detector") or {}
    tuned = det.get("tuned_on")
    reason = tuning_overlap(tuned, label_names, manifest)
    if reason is None:
        return None, entry
    return (f"EVALUATING ON THE TUNING SET: the {task} predictions in {pred_dir} come from {det.get('path', 'a detector')}, "
            f"tuned on {tuned.get('path', '?')}; this label set shares {reason}. Its rules were chosen on these cases, "
            f"so the AP is optimistic: evaluate on held-out data (a synth set from another fold)."), entry
