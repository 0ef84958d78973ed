"""K-fold split of volumes (the seed's create_folds), seeded and stored as ``filename,test_fold`` CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from ..atomic import write_text
from ..errors import MoodError
from ..volumes import check_volume_ids, volume_id

Split = Literal["train", "val", "all"]


def make_folds(filenames: Iterable[str], n_folds: int, seed: int) -> dict[str, int]:
    """Assign each file to one of ``n_folds`` folds: a seeded shuffle dealt round-robin (sizes differ by <= 1)."""
    names = sorted(Path(f).name for f in filenames)
    if len(set(names)) != len(names):
        raise MoodError("folds: duplicate file names")
    check_volume_ids(names)  # later commands match files by volume id: refuse names they would reject
    if n_folds < 2:
        raise MoodError(f"folds: --n-folds must be at least 2 (got {n_folds})")
    if len(names) < n_folds:
        raise MoodError(f"folds: {len(names)} volumes cannot fill {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i]: int(rank % n_folds) for rank, i in enumerate(order)}


def write_folds_csv(path: str | os.PathLike, folds: dict[str, int]) -> Path:
    """Write the seed's format: header ``filename,test_fold``, one row per volume, sorted by name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["filename", "test_fold"])
    for name in sorted(folds):
        writer.writerow([name, folds[name]])
    return write_text(path, buf.getvalue())


def read_folds(path: str | os.PathLike) -> dict[str, int]:
    """Read a folds CSV into ``{volume_id: fold}`` (ids as in :func:`mood_dpa.volumes.volume_id`)."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such folds file")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"filename", "test_fold"} <= set(reader.fieldnames):
                raise MoodError(f"{path}: expected a CSV with header 'filename,test_fold'")
            out: dict[str, int] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    fold = int(row["test_fold"])
                except (TypeError, ValueError):
                    raise MoodError(f"{path}: line {line}: test_fold {row['test_fold']!r} is not an integer") from None
                vid = volume_id(row["filename"])
                if vid in out:
                    raise MoodError(f"{path}: line {line}: volume {vid} listed twice")
                out[vid] = fold
    except (UnicodeDecodeError, csv.Error):
        raise MoodError(f"{path}: not a folds CSV (not a UTF-8 CSV text file)") from None
    if not out:
        raise MoodError(f"{path}: no rows")
    return out


def split_ids(folds: dict[str, int], fold: int, split: Split) -> set[str]:
    """Volume ids of a split: ``val`` = the fold, ``train`` = every other fold, ``all`` = everything."""
    if fold not in set(folds.values()):
        raise MoodError(f"fold {fold} does not exist (folds present: {sorted(set(folds.values()))})")
    if split == "all":
        return set(folds)
    if split == "val":
        return {v for v, f in folds.items() if f == fold}
    if split == "train":
        return {v for v, f in folds.items() if f != fold}
    raise MoodError(f"unknown split {split!r} (train, val or all)")


def paths_of_split(paths: Iterable[str | os.PathLike], folds: str | os.PathLike | dict[str, int], fold: int,
                   split: Split) -> list[Path]:
    """The ``paths`` whose volume id is in ``split`` of ``fold`` (``folds``: a folds CSV or a read table).

    The ONE fold filter of the command line and the demo: ``val`` = the volumes of the fold (calibration,
    synthetic validation sets), ``train`` = all the others (fitting)."""
    table = folds if isinstance(folds, dict) else read_folds(folds)
    ids = split_ids(table, fold, split)
    return [Path(p) for p in paths if volume_id(p) in ids]
