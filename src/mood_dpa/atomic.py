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

    The new folder carries the marker of mood_dpa.outputs. An existing ``dest`` with that marker (one we
    made) is moved aside first and removed only after the rename succeeded. An existing ``dest`` without
    it is never deleted: the new entries are moved into it one by one, replacing only same-named entries
    (the caller has checked with mood_dpa.outputs.prepare_output_dir that this was asked for).
    """
    from .outputs import MARKER, is_ours

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / MARKER).write_text("made by mood-dpa; mood-dpa may replace this folder\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.is_dir() and not is_ours(dest):
        _merge_into(tmp, dest)
        return
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".old", dir=dest.parent))
        os.rmdir(old)
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _merge_into(tmp: Path, dest: Path) -> None:
    """Move every entry of ``tmp`` into ``dest`` (same-named entries replaced), then remove ``tmp``.

    The marker goes along only when ``dest`` holds nothing else: a folder with someone else's files
    must never become replaceable whole.
    """
    from .outputs import MARKER, _foreign_entries

    keep_unmarked = bool(_foreign_entries(dest))
    try:
        for entry in sorted(tmp.iterdir()):
            if entry.name == MARKER and keep_unmarked:
                continue
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                aside = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".old", dir=dest))
                os.rmdir(aside)
                os.replace(target, aside)
                os.replace(entry, target)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
