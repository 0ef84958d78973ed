"""The MOOD file layout, read one way for the whole project: case names, label and prediction files, manifests.

Why here (the data layer): the evaluator, the tuning of a detector and the prediction record all read
the same files (``toy/``, ``toy_label/pixel/``, ``toy_label/sample/<name>.txt``, ``manifest.csv``);
one reader each keeps their rules identical (MOOD_PROTOCOL.md: labels 0/1, predictions read as float16,
a sample file's first line).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MoodError

TASKS = ("pixel", "sample")
NORMAL_KIND = "normal"


def case_name(file_name: str) -> str:
    """``toy_0.nii.gz`` / ``toy_0.nii.gz.txt`` -> ``toy_0`` (the manifest's case column)."""
    name = file_name
    for suffix in (".txt", ".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def resolve_label_dir(labels: str | os.PathLike, task: str) -> Path:
    """Accept the task folder itself, its parent (``toy_label``) or the set's root (``OUT``)."""
    labels = Path(labels)
    for cand in (labels / task, labels / "toy_label" / task):
        if cand.is_dir():
            return cand
    if not labels.is_dir():
        raise MoodError(f"{labels}: no such label folder")
    return labels


def list_label_files(label_dir: Path, task: str) -> list[Path]:
    if task == "pixel":
        files = [p for p in label_dir.iterdir() if p.is_file() and p.name.endswith((".nii.gz", ".nii")) and not p.name.startswith(".")]
    else:
        files = [p for p in label_dir.iterdir() if p.is_file() and p.name.endswith(".txt") and not p.name.startswith(".")]
    if not files:
        kind = "NIfTI label volumes" if task == "pixel" else "*.txt sample labels"
        raise MoodError(f"{label_dir}: no {kind} in this folder")
    return sorted(files)


def read_label_volume(path: Path) -> tuple[np.ndarray, tuple]:
    """Label rounded and clipped to {0,1}, as bool (raises MoodError when unreadable)."""
    import nibabel as nib  # start-up: nibabel only for label files

    try:
        img = nib.load(str(path))
        raw = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad label file
        raise MoodError(f"{path}: cannot read label volume ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    check_binary_labels(raw, path)
    return raw >= 1, raw.shape


def check_binary_labels(raw: np.ndarray, path: Path) -> None:
    """Labels must be 0 or 1: an image folder given as labels would otherwise be rounded into a plausible AP."""
    if raw.dtype == bool:
        return
    if np.issubdtype(raw.dtype, np.floating) and np.isnan(raw).any():
        raise MoodError(f"{path}: label volume has NaN voxels; labels must be 0 or 1")
    other = np.count_nonzero((raw != 0) & (raw != 1))
    if other:
        lo, hi = float(np.min(raw)), float(np.max(raw))
        raise MoodError(
            f"{path}: {other} label voxels are neither 0 nor 1 (values span [{lo:.4g}, {hi:.4g}]); "
            "labels must be 0 or 1 (is this the image folder?)"
        )


def same_grid(a: Path, b: Path, atol: float = 1e-3) -> bool:
    """Whether two NIfTI files share their voxel-to-world affine (headers only; unreadable: True, nothing to say)."""
    import nibabel as nib  # start-up: nibabel only for label files

    try:
        return bool(np.allclose(nib.load(str(a)).affine, nib.load(str(b)).affine, atol=atol))
    except Exception:  # noqa: BLE001 - the readers report unreadable files themselves
        return True


def read_prediction_volume(path: Path) -> np.ndarray:
    """Prediction as float16, exactly as the official script reads it (clipping happens when counting)."""
    import nibabel as nib  # start-up: nibabel only for prediction files

    img = nib.load(str(path))
    return np.asanyarray(img.get_fdata(dtype=np.float16, caching="unchanged"))


def _first_line(path: Path) -> str:
    with open(path, errors="replace") as fh:
        return fh.readline().strip()


def read_sample_label(path: Path) -> int:
    try:
        value = int(_first_line(path))
    except (OSError, ValueError):
        raise MoodError(f"{path}: first line is not an integer sample label (0 or 1)") from None
    if value not in (0, 1):
        raise MoodError(f"{path}: sample label {value}; labels must be 0 or 1")
    return value


def read_sample_prediction(path: Path, warn: Callable[[str], None], case: str) -> tuple[float, bool]:
    if not path.is_file():
        warn(f"{case}: no prediction {path}; counted as 0.0")
        return 0.0, True
    try:
        value = float(_first_line(path))
    except (OSError, ValueError):
        warn(f"{case}: prediction {path} is not a number; counted as 0.0")
        return 0.0, True
    if math.isnan(value):
        raise MoodError(f"{path}: prediction is NaN (the MOOD metric is undefined with NaN)")
    return float(np.clip(value, 0.0, 1.0)), False


# ---------------------------------------------------------------- manifests


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``manifest.csv`` (needs at least the columns case and kind)."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such manifest file")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"case", "kind"} <= set(reader.fieldnames):
                raise MoodError(f"{path}: not a manifest (expected columns case and kind)")
            return list(reader)
    except (UnicodeDecodeError, csv.Error):
        raise MoodError(f"{path}: not a manifest (not a UTF-8 CSV text file)") from None


def manifest_sources(path: str | os.PathLike) -> list[str] | None:
    """Sorted source volumes of a manifest: ``sha256:<hex>`` of each source's content when the manifest has
    a ``source_sha256`` column (names repeat across folders: every prepared folder starts at 00000.nii.gz),
    else the ``source`` names (None: no such column / file)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames and "source_sha256" in reader.fieldnames:
                return sorted({f"sha256:{row['source_sha256']}" for row in reader if row.get("source_sha256")})
            if not reader.fieldnames or "source" not in reader.fieldnames:
                return None
            return sorted({row["source"] for row in reader if row.get("source")})
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def manifest_sha256(path: str | os.PathLike) -> str | None:
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def find_manifest(labels: str | os.PathLike, manifest: str | os.PathLike | None = None) -> Path | None:
    """The evaluated set's manifest: the one given, else ``manifest.csv`` beside the labels (the set's
    root, ``toy_label`` or ``toy_label/<task>`` given as labels)."""
    if manifest is not None:
        return Path(manifest) if Path(manifest).is_file() else None
    labels = Path(labels).resolve()
    for folder in (labels, labels.parent, labels.parent.parent):
        if (folder / "manifest.csv").is_file():
            return folder / "manifest.csv"
    return None
