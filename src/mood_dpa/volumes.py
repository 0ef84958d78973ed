"""NIfTI volumes: read and validate, write atomically, list a folder.

Every reader in the toolkit goes through :func:`read_volume`, so a bad file is
refused in one place with one clear line naming it.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .errors import MoodError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Volume:
    """A 3-D float32 volume with the affine and header it came with."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.path else "<memory>"


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


#: The file naming rule, stated once: a volume file is ``<id>.nii.gz`` or ``<id>.nii`` (optionally
#: ``<id>_<anything>.nii.gz``); its volume id is the name up to the first '.' or '_' (seed convention).
#: Folds, slice stores, synthetic sets, the baseline and calibration all match files by this id, so two
#: files with the same id (``sub_01.nii.gz`` and ``sub_02.nii.gz``: both ``sub``) are refused everywhere.
NAMING_RULE = "a file's volume id is its name up to the first '.' or '_'"

#: Intensities of MOOD-form volumes lie in [0, 1]; a little overshoot (resampling ringing) is tolerated.
RANGE_TOLERANCE = 0.01
#: A MOOD-form volume has at least this many voxels along every axis (a 64x64x1 file is a 2-D image).
MIN_SIDE = 4
_range_check = False


def volume_id(path: str | os.PathLike) -> str:
    """The volume a file belongs to: its name up to the first '.' or '_' (seed convention, :data:`NAMING_RULE`)."""
    return re.split(r"[._]", Path(path).name, maxsplit=1)[0]


def check_volume_ids(paths: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{volume id: path}``; two files with one id are refused with an error that names both."""
    seen: dict[str, Path] = {}
    for p in paths:
        p = Path(p)
        vid = volume_id(p)
        if not vid:
            raise MoodError(f"{p}: empty volume id ({NAMING_RULE}); rename the file")
        if vid in seen:
            raise MoodError(
                f"{seen[vid].name} and {p.name} have the same volume id {vid!r} ({NAMING_RULE}); rename one of them"
            )
        seen[vid] = p
    return seen


def set_range_check(enabled: bool) -> None:
    """Turn the MOOD-form checks of :func:`read_volume` on (commands that train or score: intensities in [0, 1],
    at least :data:`MIN_SIDE` voxels along every axis) or off."""
    global _range_check
    _range_check = bool(enabled)


def check_range(data: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse intensities outside [0, 1] (beyond :data:`RANGE_TOLERANCE`): a CT in HU or a [0,255] MRI would be clamped silently."""
    lo, hi = float(data.min()), float(data.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise MoodError(
            f"{path}: intensities span [{lo:.4g}, {hi:.4g}], outside [0, 1]; convert the scans to the MOOD form "
            "with 'mood-dpa prepare' (or pass --no-range-check)"
        )


def list_volumes(folder: str | os.PathLike) -> list[Path]:
    """All ``*.nii`` / ``*.nii.gz`` files of a folder in sorted order; other files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MoodError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p.name) and not p.name.startswith("."))
    if not files:
        raise MoodError(f"{folder}: no .nii or .nii.gz volumes in this folder")
    return files


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI file into float32 (3-D, or 4-D with a singleton 4th axis), validated."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MoodError(f"{path}: empty file")
    if not is_nifti(path.name):
        raise MoodError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise MoodError(f"{path}: not a NIfTI image")
        raw_dtype = img.get_data_dtype()
        if np.issubdtype(raw_dtype, np.complexfloating):
            raise MoodError(f"{path}: complex voxel type {raw_dtype} is not supported")
        if raw_dtype.fields is not None:
            raise MoodError(f"{path}: structured voxel type {raw_dtype} is not supported")
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            kind = "real 4-D" if len(shape) == 4 else f"{len(shape)}-D"
            raise MoodError(f"{path}: {kind} image of shape {img.shape}; expected a 3-D volume")
        if min(shape) < 1:
            raise MoodError(f"{path}: empty image of shape {img.shape}")
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except MoodError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MoodError(f"{path}: truncated or corrupt gzip data ({exc})") from None
    except nib.filebasedimages.ImageFileError as exc:
        raise MoodError(f"{path}: {_diagnose(path) or 'not a readable NIfTI file'} ({str(exc).splitlines()[0]})") from None
    except (OSError, ValueError, TypeError) as exc:
        raise MoodError(f"{path}: cannot read volume ({exc})") from None
    if not np.isfinite(data).all():
        bad = int(np.size(data) - np.isfinite(data).sum())
        raise MoodError(f"{path}: {bad} NaN or infinite voxels")
    if _range_check:
        check_range(data, path)
        if min(data.shape) < MIN_SIDE:
            raise MoodError(f"{path}: shape {'x'.join(map(str, data.shape))} is a 2-D image or a thin slab, not a volume "
                            f"(at least {MIN_SIDE} voxels along every axis); bring raw scans to the MOOD form with 'mood-dpa prepare'")
    return Volume(data=data, affine=np.asarray(img.affine, dtype=np.float64), header=img.header, path=path)


def _diagnose(path: Path) -> str | None:
    """On a failed read, tell a broken gzip stream apart from a file that is simply not NIfTI."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
        return "not a gzip file" if path.name.endswith(".gz") else None
    try:
        with gzip.open(path, "rb") as gz:
            while gz.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error):
        return "truncated or corrupt gzip data"
    return "not a NIfTI file (gzip content has no NIfTI header)"


def write_volume(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    header: nib.Nifti1Header | None = None,
    dtype: np.dtype | type = np.float32,
    compresslevel: int = 1,
) -> Path:
    """Write a volume atomically; ``compresslevel`` (0-9) applies to ``.nii.gz``. 3-D, or 4-D with one volume
    (a map written back onto a raw (x, y, z, 1) scan keeps that shape)."""
    path = Path(path)
    if not is_nifti(path.name):
        raise MoodError(f"{path}: output name must end in .nii or .nii.gz")
    arr = np.asarray(data).astype(dtype, copy=False)
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[3] == 1)):
        raise MoodError(f"{path}: refusing to write a {arr.ndim}-D array of shape {arr.shape} as a volume")
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(arr, aff, header=hdr)
    img.set_data_dtype(arr.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path) as tmp:
        # nibabel picks compression from the suffix, so write to a temp name ending like the target.
        tmp_nii = tmp.with_name(tmp.name + suffix)
        try:
            if suffix == ".nii.gz":
                raw = img.to_bytes()
                with open(tmp, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                    gz.write(raw)
            else:
                img.to_filename(str(tmp_nii))
                os.replace(tmp_nii, tmp)
        finally:
            tmp_nii.unlink(missing_ok=True)
    return path


def iter_volumes(paths: Sequence[str | os.PathLike], prefetch: int = 2) -> Iterator[tuple[Path, "Volume | MoodError"]]:
    """Yield ``(path, Volume)`` in order while up to ``prefetch`` later files are read in threads.

    A file that fails to read yields its MoodError instead of a Volume, so a caller
    can report it and go on with the others.
    """
    def load(p: Path) -> "Volume | MoodError":
        try:
            return read_volume(p)
        except MoodError as exc:
            return exc

    paths = [Path(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
        pending = [pool.submit(load, p) for p in paths[: prefetch + 1]]
        for i, path in enumerate(paths):
            result = pending[i].result()
            pending[i] = None  # free the volume once handed over
            nxt = i + prefetch + 1
            if nxt < len(paths):
                pending.append(pool.submit(load, paths[nxt]))
            yield path, result
