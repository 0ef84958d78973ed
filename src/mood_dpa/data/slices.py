"""2-D slices of volumes: the ONE empty-slice rule, the resize chain, and the slice store.

Training and inference both call :func:`kept_indices` and :func:`resize_slices`, so a
slice the model never saw in training is skipped the same way at inference (seed
defect 2: two different filters and resize chains).
"""

from __future__ import annotations

import csv
import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_dir
from ..errors import MoodError
from ..progress import track
from ..volumes import check_volume_ids, iter_volumes, list_volumes, volume_id
from .folds import Split, split_ids

#: The seed kept a slice with at least 4000 of its 256x256 pixels > 0.
SEED_MIN_FRACTION = 4000 / 65536
#: Version 2: ``index.csv``'s ``row`` is the slice's position in ``slices.npy``. Version 1 wrote a wrong
#: ``row`` column (a running count that skipped ahead); its index rows are still in array order, so a
#: version-1 store is read by position and its ``row`` column is ignored.
STORE_VERSION = 2
READABLE_STORE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class SliceRule:
    """A slice is kept when the fraction of its pixels > ``threshold`` (at native size) is >= ``min_fraction``."""

    min_fraction: float = SEED_MIN_FRACTION
    threshold: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SliceRule":
        return cls(min_fraction=float(d["min_fraction"]), threshold=float(d["threshold"]))


def take_slices(volume: np.ndarray | torch.Tensor, axis: int) -> np.ndarray | torch.Tensor:
    """Stack of 2-D slices (n, H, W) along ``axis``; each slice keeps the other two axes in array order."""
    if axis not in (0, 1, 2):
        raise MoodError(f"axis must be 0, 1 or 2 (got {axis})")
    if isinstance(volume, torch.Tensor):
        return volume.movedim(axis, 0)
    return np.moveaxis(volume, axis, 0)


def foreground_fraction(volume: np.ndarray | torch.Tensor, axis: int, threshold: float = 0.0) -> np.ndarray:
    """Fraction of pixels > ``threshold`` in every slice along ``axis`` (float64 array of length n)."""
    stack = take_slices(volume, axis)
    if isinstance(stack, torch.Tensor):
        frac = (stack > threshold).flatten(1).double().mean(1)
        return frac.cpu().numpy()
    return (stack > threshold).reshape(stack.shape[0], -1).mean(axis=1)


def kept_indices(volume: np.ndarray | torch.Tensor, axis: int, rule: SliceRule = SliceRule()) -> np.ndarray:
    """Indices (ascending) of the slices along ``axis`` that the rule keeps."""
    frac = foreground_fraction(volume, axis, rule.threshold)
    # a tiny tolerance so that a fraction equal to the bound on paper is not lost to rounding
    return np.flatnonzero(frac >= rule.min_fraction - 1e-12)


def resize_slices(stack: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (N,H,W) or (N,1,H,W) to (N,1,size,size): antialiased bilinear, on the tensor's device."""
    if stack.ndim == 3:
        stack = stack[:, None]
    if stack.ndim != 4 or stack.shape[1] != 1:
        raise ValueError(f"expected (N,H,W) or (N,1,H,W), got {tuple(stack.shape)}")
    if not stack.is_floating_point():
        stack = stack.float()
    if stack.shape[-2:] == (size, size):
        return stack
    return F.interpolate(stack, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def volume_slices(volume: np.ndarray, axis: int, size: int, rule: SliceRule = SliceRule()) -> tuple[np.ndarray, torch.Tensor]:
    """The kept slice indices of a volume and those slices resized to (k,1,size,size) float32."""
    idx = kept_indices(volume, axis, rule)
    stack = take_slices(volume, axis)[idx]
    tensor = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
    return idx, resize_slices(tensor, size) if len(idx) else tensor.reshape(0, 1, size, size)


# --------------------------------------------------------------------------- store

def _npy_header(shape: tuple[int, ...], descr: str = "<f2", length: int = 128) -> bytes:
    """A fixed-length .npy v1.0 header, so the shape can be rewritten once the slice count is known."""
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    body = text + " " * (length - 10 - len(text) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def build_store(
    volumes: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    axis: int,
    size: int = 128,
    rule: SliceRule = SliceRule(),
) -> "SliceStore":
    """Slice every volume along ``axis`` into a store folder (written whole or not at all)."""
    paths = list_volumes(volumes) if isinstance(volumes, (str, os.PathLike)) else [Path(p) for p in volumes]
    if not paths:
        raise MoodError("slices: no input volumes")
    if not 8 <= size <= 1024:
        raise MoodError(f"slices: --size must be between 8 and 1024 (got {size})")
    if axis not in (0, 1, 2):
        raise MoodError(f"slices: --axis must be 0, 1 or 2 (got {axis})")
    check_volume_ids(paths)  # names the two files that collide
    rows: list[tuple[int, str, str, int]] = []
    shapes: dict[str, list[int]] = {}
    with atomic_dir(out) as tmp:
        with open(tmp / "slices.npy", "wb") as fh:
            fh.write(_npy_header((0, size, size)))
            for path, vol in track(iter_volumes(paths), f"slicing axis {axis}", total=len(paths)):
                if isinstance(vol, MoodError):
                    raise vol
                idx, stack = volume_slices(vol.data, axis, size, rule)
                fh.write(stack[:, 0].clamp(0, 1).numpy().astype("<f2").tobytes())
                vid = volume_id(path)
                shapes[path.name] = list(vol.data.shape)
                first = len(rows)  # the row of this volume's first slice in slices.npy
                rows.extend((first + k, vid, path.name, int(i)) for k, i in enumerate(idx))
            fh.seek(0)
            if not rows:  # raised inside atomic_dir: the half-made store is removed, an earlier one is kept
                raise MoodError(f"no slice of the {len(paths)} volumes passes the empty-slice rule (at least "
                                f"{rule.min_fraction:.1%} of a slice above {rule.threshold:g}); are the volumes in the MOOD form?")
            fh.write(_npy_header((len(rows), size, size)))
        with open(tmp / "index.csv", "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["row", "volume_id", "file", "slice_index"])
            writer.writerows(rows)
        meta = {
            "version": STORE_VERSION,
            "axis": axis,
            "size": size,
            "rule": rule.to_dict(),
            "n_slices": len(rows),
            "volumes": shapes,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return SliceStore(out)


class SliceStore:
    """A folder of one axis's slices: ``slices.npy`` (N,S,S float16, memory-mapped), ``index.csv``, ``meta.json``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise MoodError(f"{self.path}: not a slice store (no meta.json); make one with 'mood-dpa slices'")
        try:
            self.meta = json.loads(meta_file.read_text())
            self.slices = np.load(self.path / "slices.npy", mmap_mode="r")
            with open(self.path / "index.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, ValueError, KeyError) as exc:
            raise MoodError(f"{self.path}: broken slice store ({exc})") from None
        version = self.meta.get("version")
        if version not in READABLE_STORE_VERSIONS:
            raise MoodError(
                f"{self.path}: slice store version {version!r} cannot be read by this mood-dpa "
                f"(reads versions {', '.join(map(str, READABLE_STORE_VERSIONS))}); rebuild it with 'mood-dpa slices'"
            )
        self.version = int(version)
        self.axis: int = int(self.meta["axis"])
        self.size: int = int(self.meta["size"])
        self.rule = SliceRule.from_dict(self.meta["rule"])
        self.volume_ids = np.array([r["volume_id"] for r in rows], dtype=object)
        self.files = np.array([r["file"] for r in rows], dtype=object)
        self.slice_indices = np.array([int(r["slice_index"]) for r in rows], dtype=np.int64)
        if len(rows) != self.slices.shape[0]:
            raise MoodError(f"{self.path}: index has {len(rows)} rows but slices.npy has {self.slices.shape[0]}")
        if self.version >= 2:
            try:
                listed = np.array([int(r["row"]) for r in rows], dtype=np.int64)
            except (KeyError, ValueError, TypeError):
                listed = None
            if listed is None or not np.array_equal(listed, np.arange(len(rows))):
                raise MoodError(f"{self.path}: index.csv's row column does not match slices.npy; rebuild it with 'mood-dpa slices'")
        # version 1: the row column is wrong but the index lists slices in array order, so position is the row

    def __len__(self) -> int:
        return int(self.slices.shape[0])

    def rows_of(self, ids: set[str] | None) -> np.ndarray:
        """Row numbers whose volume id is in ``ids`` (all rows when ``ids`` is None)."""
        if ids is None:
            return np.arange(len(self))
        return np.flatnonzero(np.isin(self.volume_ids, list(ids)))


class SliceDataset(torch.utils.data.Dataset):
    """Slices of one or several stores, filtered by fold split; items are float32 (1,S,S) in [0,1]."""

    def __init__(
        self,
        stores: SliceStore | str | os.PathLike | Sequence[SliceStore | str | os.PathLike],
        folds: dict[str, int] | None = None,
        fold: int = 0,
        split: Split = "all",
    ):
        if isinstance(stores, (SliceStore, str, os.PathLike)):
            stores = [stores]
        self.stores = [s if isinstance(s, SliceStore) else SliceStore(s) for s in stores]
        sizes = {s.size for s in self.stores}
        if len(sizes) != 1:
            raise MoodError(f"slice stores have different slice sizes {sorted(sizes)}")
        self.size = sizes.pop()
        ids = None if folds is None or split == "all" else split_ids(folds, fold, split)
        self._items = [(k, r) for k, s in enumerate(self.stores) for r in s.rows_of(ids)]
        if not self._items:
            raise MoodError(f"no slices in the {split} split of fold {fold}")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> torch.Tensor:
        k, r = self._items[i]
        return torch.from_numpy(np.asarray(self.stores[k].slices[r], dtype=np.float32))[None]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return [self[i] for i in indices]

    def volume_of(self, i: int) -> tuple[str, int]:
        """(volume id, slice index) of item ``i``."""
        k, r = self._items[i]
        s = self.stores[k]
        return str(s.volume_ids[r]), int(s.slice_indices[r])
