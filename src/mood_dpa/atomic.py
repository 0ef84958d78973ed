"""Atomic outputs: write to a temporary name in the same folder, then rename.

A crash or a bad input never leaves a half-written file or folder behind,
and an earlier output with the same name stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .ownership import MARKER, MARKER_TEXT, foreign_entries, is_ours


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prefix(dest: Path) -> str:
    """``.NAME.PID-``: the process id lets a later run tell a stale temporary from a live one (mood_dpa.outputs)."""
    return f".{dest.name}.{os.getpid()}-"


def _tmp_name(dest: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    return Path(name)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``dest``; rename it onto ``dest`` on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(dest: str | os.PathLike, text: str) -> Path:
    """Atomically write a text file."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    """Atomically write a binary file."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success it replaces ``dest`` whole.

    The new folder carries the marker of :mod:`mood_dpa.ownership`. An existing ``dest`` with that marker
    (one we made) is moved aside first and removed only after the rename succeeded. An existing ``dest``
    without it is never deleted: the new entries are merged into it (:func:`merge_into`), replacing only
    same-named files (the caller has checked with mood_dpa.outputs.prepare_output_dir that this was asked for).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / MARKER).write_text(MARKER_TEXT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.is_dir() and not is_ours(dest):
        try:
            merge_into(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    _swap_in(tmp, dest)


def _swap_in(new: Path, dest: Path) -> None:
    """Rename ``new`` onto ``dest``; an existing ``dest`` is set aside first and removed after the rename."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".old", dir=dest.parent))
        os.rmdir(old)
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def merge_into(src: Path, dest: Path) -> None:
    """Move every entry of ``src`` into the folder ``dest``, keeping everything of ``dest`` that ``src`` lacks.

    Files replace same-named files. A sub-folder replaces a same-named sub-folder whole only when that
    one is ours (it carries the marker); otherwise the two are merged the same way, one level down, so
    ``--overwrite`` never deletes a file mood-dpa did not write. The marker goes along only when ``dest``
    holds nothing else: a folder with someone else's files must never become replaceable whole.
    """
    keep_unmarked = bool(foreign_entries(dest))
    for entry in sorted(src.iterdir()):
        if entry.name == MARKER and keep_unmarked:
            continue
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink() and not is_ours(target):
            merge_into(entry, target)
        elif entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _swap_in(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                raise OSError(f"{target}: is a folder; it is not replaced by a file")
            os.replace(entry, target)
