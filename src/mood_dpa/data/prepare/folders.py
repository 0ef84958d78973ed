"""Folders of scans: ``mood-dpa prepare`` (records, names, settings; all or nothing) and ``mood-dpa restore``."""


from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from ...atomic import write_text
from ...errors import MoodError
from ...progress import track
from ...volumes import (
    NIFTI_SUFFIXES,
    is_nifti,
    list_volumes,
    read_volume,
    volume_id,
    write_volume,
)
from .volume import (
    NAMES_FILE,
    RECORD_FORMAT,
    RECORD_VERSION,
    RECORDS_DIR,
    SETTINGS_FILE,
    PrepareSettings,
    prepare_volume,
    restore_volume,
)


def _inside(a: Path, b: Path) -> bool:
    """True when folder ``a`` is ``b`` or lies inside it (resolved, symlinks followed)."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def check_output_folder(out: Path, inputs: list[tuple[str, Path]], overwrite: bool) -> None:
    """Refuse an output that is, holds or lies in an input folder, a non-empty folder without ``--overwrite``,
    or a place that cannot be written; all before any work starts, and without creating anything."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MoodError(f"{out}: exists and is not a folder")
    for option, folder in inputs:
        if _inside(out, folder) or _inside(folder, out):
            raise MoodError(f"{out}: the output folder must not be, contain or lie inside the {option} folder {folder}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MoodError(f"{out}: folder exists and is not empty; choose a new folder or pass --overwrite")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise MoodError(f"{out}: cannot write here ({existing} is not a writable folder)")


@contextlib.contextmanager
def _undo_on_failure(out: Path):
    """Yield a list to note each file written; on any failure remove them (and ``out`` if this run made it)."""
    created = not out.exists()
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            for folder in (out / RECORDS_DIR, out):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: never anything this run did not write
        raise


def list_inputs(path: Path) -> list[Path]:
    """A single NIfTI file, or every NIfTI file of a folder in sorted order."""
    path = Path(path)
    if path.is_file():
        if not is_nifti(path.name):
            raise MoodError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
        return [path]
    if not path.exists():
        raise MoodError(f"{path}: no such file or folder")
    return list_volumes(path)


def stem(path: Path | str) -> str:
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_names(sources: list[Path], keep_names: bool) -> list[str]:
    """MOOD names (``00000.nii.gz`` ... in sorted source order), or the sources' own stems with ``keep_names``."""
    if not keep_names:
        return [f"{i:05d}.nii.gz" for i in range(len(sources))]
    names, seen = [], {}
    for src in sources:
        s = stem(src)
        if not s or volume_id(s + ".nii.gz") != s:
            raise MoodError(
                f"{src}: with --keep-names a name may not contain '_' or '.' before .nii[.gz] (the toolkit maps files to "
                "volumes by the name up to the first '_' or '.'); rename it or leave out --keep-names"
            )
        if s in seen:
            raise MoodError(f"{src} and {seen[s]} would both become {s}.nii.gz")
        seen[s] = src
        names.append(f"{s}.nii.gz")
    return names


def _previous_names(out: Path) -> list[str]:
    """Outputs a previous prepare run listed in ``names.csv`` (only those this tool made are ever removed)."""
    path = out / NAMES_FILE
    if not (out / RECORDS_DIR / SETTINGS_FILE).is_file() or not path.is_file():
        return []
    try:
        with open(path, newline="") as fh:
            return [row["name"] for row in csv.DictReader(fh) if re.fullmatch(r"[^/\\]+\.nii\.gz", row.get("name") or "")]
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return []


def prepare_folder(
    raw: Path, out: Path, settings: PrepareSettings, keep_names: bool = False, overwrite: bool = False, compresslevel: int = 1
) -> list[Path]:
    """Prepare every scan of ``raw`` into ``out`` (volumes, ``names.csv``, ``prepare/<name>.json``)."""
    raw, out = Path(raw), Path(out)
    if not raw.exists():
        raise MoodError(f"{raw}: no such file or folder")
    check_output_folder(out, [("input", raw if raw.is_dir() else raw.parent)], overwrite)
    sources = list_inputs(raw)
    names = output_names(sources, keep_names)
    previous = _previous_names(out)
    records = out / RECORDS_DIR
    with _undo_on_failure(out) as written:
        for src, name in track(list(zip(sources, names)), f"prepare {settings.modality}", total=len(sources)):
            vol = read_volume(src)
            prepared = prepare_volume(vol.data, vol.affine, settings, source=str(src.resolve()))
            prepared.record["name"] = name
            prepared.record["source_name"] = src.name
            prepared.record["source_file_shape"] = [int(v) for v in vol.header.get_data_shape()]  # e.g. (x, y, z, 1)
            written.append(write_volume(out / name, prepared.data, prepared.affine, compresslevel=compresslevel))
            written.append(write_text(records / (stem(name) + ".json"), json.dumps(prepared.record, indent=2) + "\n"))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "source"])
        writer.writerows((name, str(src.resolve())) for name, src in zip(names, sources))
        write_text(out / NAMES_FILE, buf.getvalue())
        settings_doc = {"format": "mood-dpa prepare settings", "version": RECORD_VERSION, **settings.as_dict()}
        write_text(records / SETTINGS_FILE, json.dumps(settings_doc, indent=2) + "\n")
    for old in sorted(set(previous) - set(names)):  # outputs of an earlier run of ours that this run does not make
        (out / old).unlink(missing_ok=True)
        (records / (stem(old) + ".json")).unlink(missing_ok=True)
    return [p for p in written if p.suffix == ".gz"]


def load_record(path: Path) -> dict:
    """Read and check one ``prepare/<name>.json`` record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise MoodError(f"{path}: not a readable prepare record ({exc})") from None
    need = ("index_map", "source_shape", "source_affine", "output_shape")
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or any(k not in record for k in need):
        raise MoodError(f"{path}: not a mood-dpa prepare record")
    try:
        index_map = np.asarray(record["index_map"], dtype=np.float64)
        ok = index_map.shape == (4, 4) and np.isfinite(index_map).all() and abs(np.linalg.det(index_map)) > 1e-12
        ok = ok and np.asarray(record["source_affine"], dtype=np.float64).shape == (4, 4) and len(record["source_shape"]) == 3
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise MoodError(f"{path}: damaged prepare record (index map, source shape or affine)")
    return record


def find_record(score_file: Path, records: Path) -> Path:
    """The record of a score map: ``<stem>.json``, else the record of its volume id (``00003_sink`` -> ``00003``)."""
    for key in (stem(score_file), volume_id(score_file)):
        candidate = records / f"{key}.json"
        if candidate.is_file():
            return candidate
    raise MoodError(f"{score_file}: no prepare record {records / (volume_id(score_file) + '.json')}")


def restored_name(score_file: Path, record: dict) -> str:
    """Named after the raw scan, with whatever the score file adds after its volume id (``_sink``)."""
    vid = volume_id(score_file)
    rest = score_file.name[len(vid):]
    raw_stem = stem(record.get("source_name") or record["source"])
    return raw_stem + (rest if rest not in NIFTI_SUFFIXES else ".nii.gz")


def restore_folder(
    scores: Path, out: Path, records: Path, reference: Path | None = None, order: int = 1, overwrite: bool = False
) -> list[Path]:
    """Every score map of ``scores`` back onto its raw scan's grid and affine, written to ``out``."""
    scores, out, records = Path(scores), Path(out), Path(records)
    if not scores.exists():
        raise MoodError(f"{scores}: no such file or folder")
    if not records.is_dir():
        raise MoodError(f"{records}: not a folder of prepare records (DATA/{RECORDS_DIR})")
    folders = [("scores", scores if scores.is_dir() else scores.parent), ("records", records)]
    if reference is not None:
        if not Path(reference).is_dir():
            raise MoodError(f"{reference}: not a folder")
        folders.append(("reference", Path(reference)))
    check_output_folder(out, folders, overwrite)
    files = list_inputs(scores)
    plan, seen = [], {}
    for f in files:  # every pairing checked before anything is written
        rec_path = find_record(f, records)
        record = load_record(rec_path)
        name = restored_name(f, record)
        if name in seen:
            raise MoodError(f"{f} and {seen[name]} would both be restored as {name}")
        seen[name] = f
        plan.append((f, record, name))
    with _undo_on_failure(out) as written:
        for f, record, name in track(plan, "restore", total=len(plan)):
            written.append(_restore_one(f, record, name, out, reference, order))
    return written


def _restore_one(f: Path, record: dict, name: str, out: Path, reference: Path | None, order: int) -> Path:
    """One score map onto its raw grid, checked against the raw scan when ``reference`` is given."""
    header = None
    affine = np.asarray(record["source_affine"], dtype=np.float64)
    if reference is not None:
        ref_path = Path(reference) / record.get("source_name", "")
        if not ref_path.is_file():
            raise MoodError(f"{f}: its raw scan {ref_path} is not in --reference {reference}")
        ref = read_volume(ref_path)
        if tuple(ref.data.shape) != tuple(record["source_shape"]) or not np.allclose(ref.affine, affine, atol=1e-4):
            raise MoodError(f"{ref_path}: shape or affine differ from the one prepared ({tuple(record['source_shape'])}); a different scan?")
        affine = ref.affine
        header = ref.header if type(ref.header) is nib.Nifti1Header else None
    vol = read_volume(f)
    try:
        restored = restore_volume(vol.data, record, order=order)
    except MoodError as exc:
        raise MoodError(f"{f}: {exc}") from None
    # the raw file's own shape: a (x, y, z, 1) scan gets a (x, y, z, 1) map back
    file_shape = tuple(ref.header.get_data_shape()) if reference is not None else tuple(record.get("source_file_shape") or ())
    if len(file_shape) == 4 and file_shape[3] == 1 and file_shape[:3] == restored.shape:
        restored = restored.reshape(file_shape)
    return write_volume(out / name, restored, affine, header=header)
