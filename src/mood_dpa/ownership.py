"""What mood-dpa made: the marker of its folders and the record of its single-file outputs.

Why: "nothing you made is lost" needs a way to tell our outputs from the user's files.

* A FOLDER is ours when it carries the marker file ``.mood-dpa``: only such a folder may be replaced
  whole. The marker is written only into a folder that holds nothing else, so a folder with someone
  else's files never becomes replaceable.
* A FILE given as an output (``folds -o X.csv``, ``ensemble -o X.yaml``, ``evaluate --json X.json`` ...)
  is ours when the hidden record ``.mood-dpa-files.json`` of its folder lists it with its current
  sha256: mood-dpa wrote it, and nobody changed it since. Anything else is the user's, and a command
  refuses to replace it unless told ``--overwrite`` (:func:`mood_dpa.outputs.prepare_output_file`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

MARKER = ".mood-dpa"
MARKER_TEXT = "made by mood-dpa; mood-dpa may replace this folder\n"
#: The record of the single files mood-dpa wrote into a folder (name -> sha256 of the content it wrote).
FILES_RECORD = ".mood-dpa-files.json"
FILES_FORMAT = "mood-dpa/files"
#: Hidden entries of our own that do not make a folder "not empty" (markers, records, run-script work
#: folders, write probes).
OURS = re.compile(r"^\.mood-dpa(-demo)?$|^\.mood-dpa-(work|probe)\.|^\.mood-dpa-files\.json$|^\.mood-dpa-predict\.json$")
#: A temporary or set-aside name made by mood_dpa.atomic: .NAME.[PID-]XXXXXXXX.tmp|old[.nii[.gz]]
TEMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]{8}\.(?:tmp|old)(?:\.nii|\.nii\.gz)?$")


def is_ours(folder: str | os.PathLike) -> bool:
    """True when the folder carries the marker of a mood-dpa output."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or (folder / ".mood-dpa-demo").is_file()


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """Entries that are not ours: anything but markers, records, run-script work folders and our temporaries."""
    return sorted(p.name for p in Path(folder).iterdir() if not (OURS.search(p.name) or TEMP.match(p.name)))


def mark_folder(folder: str | os.PathLike) -> bool:
    """Write the marker into ``folder`` when it holds nothing of anyone else's; returns whether it is marked."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.exists():
        return True
    if foreign_entries(folder):
        return False
    try:
        marker.write_text(MARKER_TEXT)
    except FileExistsError:  # another rank wrote it first
        pass
    return True


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (ownership records, model and volume fingerprints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_record(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / FILES_RECORD).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == FILES_FORMAT else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def written_by_us(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file mood-dpa wrote as an output and nobody changed since."""
    path = Path(path)
    if not path.is_file():
        return False
    digest = _read_record(path.parent).get(path.name)
    return digest is not None and digest == file_sha256(path)


def claim_file(path: str | os.PathLike) -> None:
    """Record ``path`` (just written by this command) as ours in its folder's record (atomic update)."""
    path = Path(path)
    record = _read_record(path.parent)
    record = {name: digest for name, digest in record.items() if (path.parent / name).is_file()}  # forget removed files
    record[path.name] = file_sha256(path)
    # written to a temporary name and renamed (mood_dpa.atomic imports this module, so not through it)
    fd, tmp = tempfile.mkstemp(prefix=f".{FILES_RECORD}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"format": FILES_FORMAT, "files": record}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path.parent / FILES_RECORD)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
