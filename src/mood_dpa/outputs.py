"""Output safety for every command: nothing the tool did not make is deleted or overwritten.

One place decides whether a command may write to its output, before any work starts:

- an existing, non-empty output folder without the tool's marker file (``.mood-dpa``) is refused unless
  ``--overwrite``; with ``--overwrite`` the command writes its entries into it and keeps everything else
  (a folder without the marker is never deleted, see :func:`mood_dpa.atomic.atomic_dir`);
- an existing output FILE that mood-dpa did not write (:func:`mood_dpa.ownership.written_by_us`) is
  refused unless ``--overwrite``; after writing, the command claims it (:func:`claim_output_file`);
- input and output that are the same, or one inside the other, are refused (a file output inside an
  input folder too);
- the output must be writable: a probe file is created and removed (a clear error, not a PermissionError
  traceback after the work is done); a read-only folder is never replaced;
- our own stale temporary files (``.NAME.<pid>-XXXXXXXX.tmp`` from :mod:`mood_dpa.atomic`, left by
  kill -9) are removed at start, unless the process that made them still runs.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import MoodError
from .ownership import MARKER, TEMP, claim_file, foreign_entries, is_ours, mark_folder, written_by_us

__all__ = ["MARKER", "is_ours", "check_separate", "check_writable", "remove_stale_temps", "prepare_output_dir",
           "mark_output_dir", "prepare_output_file", "claim_output_file"]


def _abs(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies inside it."""
    return a == b or b in a.parents


def check_separate(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *, out_is_dir: bool = True) -> None:
    """Refuse an output that is an input, lies inside an input folder, or contains an input (folders only)."""
    o = _real(out)
    for inp in inputs:
        if inp is None:
            continue
        i = _real(inp)
        if o == i:
            raise MoodError(f"{out}: the output is the input {inp}; choose another output")
        if Path(inp).is_dir() and _inside(o, i):
            what = "the output folder" if out_is_dir else "the output file"
            raise MoodError(f"{out}: {what} lies inside the input folder {inp}; choose an output outside it")
        if out_is_dir and _inside(i, o):
            raise MoodError(f"{out}: the output folder contains the input {inp}; choose an output that does not hold the input")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(folder: str | os.PathLike, what: str | None = None) -> None:
    """Create and remove a probe file in ``folder`` (or its nearest existing parent); a clear error if that fails."""
    folder = _abs(folder)
    where = _nearest_existing(folder)
    label = what or str(folder)
    if not where.is_dir():
        raise MoodError(f"{label}: {where} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".mood-dpa-probe.", dir=where)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = "no permission to write" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else exc.strerror
        raise MoodError(f"{label}: cannot write in {where} ({reason})") from None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but is not ours to signal
    return True


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove mood_dpa.atomic temporaries in ``folder`` (only those of ``name`` when given) whose maker is gone."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = TEMP.match(p.name)
        if not m or (name is not None and m.group("name") != name):
            continue
        pid = m.group("pid")
        if pid is not None and _pid_alive(int(pid)):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def prepare_output_dir(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    replace: bool = False,
) -> Path:
    """Check an output folder before any work; returns it. Changes nothing but our own stale temporaries.

    ``replace``: the command replaces the folder whole (mood_dpa.atomic.atomic_dir), so its parent must be
    writable too. Refusals are MoodErrors (one line, exit 2).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MoodError(f"{out}: exists and is not a folder")
    check_separate(out, inputs)
    if out.is_dir():
        foreign = foreign_entries(out)
        if foreign and not is_ours(out) and not overwrite:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise MoodError(
                f"{out}: folder exists, is not empty ({shown}) and was not made by mood-dpa; "
                "choose another output or pass --overwrite (other files are kept)"
            )
        check_writable(out)
        remove_stale_temps(out)
    if replace or not out.is_dir():
        check_writable(out.parent, what=str(out))
    if out.parent.is_dir():
        remove_stale_temps(out.parent, name=out.name)
    return out


def mark_output_dir(out: str | os.PathLike) -> Path:
    """Create the output folder (if needed) and mark it as ours unless it holds other files; call when writing starts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # a folder holding files of someone else (written into with --overwrite) is never marked: the
    # marker would let a later command replace it whole
    mark_folder(out)
    return out


def prepare_output_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False,
                        option: str = "--overwrite") -> Path:
    """Check an output file before any work: not a folder, not an input nor inside an input folder, not a
    file of someone else's (unless ``overwrite``), its folder writable; our stale temporaries removed."""
    out = Path(out)
    if out.is_dir():
        raise MoodError(f"{out}: is a folder; give a file name")
    check_separate(out, inputs, out_is_dir=False)
    if out.exists() and not os.access(out, os.W_OK):
        raise MoodError(f"{out}: file is read-only; it is not replaced")
    if (out.exists() or out.is_symlink()) and not overwrite and not written_by_us(out):
        raise MoodError(f"{out}: file exists and was not written by mood-dpa (or was changed since); "
                        f"choose another output or pass {option} to replace it")
    check_writable(out.parent, what=str(out))
    remove_stale_temps(out.parent, name=out.name)
    return out


def claim_output_file(out: str | os.PathLike) -> Path:
    """Record a just-written output file as ours, so that a later run may replace it without ``--overwrite``."""
    claim_file(out)
    return Path(out)
