"""Raw scans -> the MOOD form (cubic, RAS, isotropic, [0,1], background 0) and score maps back.

A user's MRI or CT comes in any orientation, spacing and unit. The models only know the MOOD form, so
:func:`prepare_volume` maps a scan onto it with ONE resampling: the output grid is a cube in world
(scanner) coordinates, axes along R, A, S (the phantoms' axes: 0 left-right, 1 posterior-anterior,
2 inferior-superior), isotropic, centred on the head or body and just large enough to hold it, with
``size`` voxels a side. Everything the crop, the pad and the resize do is therefore one affine index
map (output voxel -> source voxel), stored per volume in a JSON record so that :func:`restore_volume`
can bring a score map back onto the raw scan's own grid and affine, for viewing over the raw scan.

Steps of :func:`prepare_volume`:

1. a coarse isotropic world-aligned copy of the whole field of view finds the foreground
   (smoothed intensity above a threshold: CT above -500 HU, MRI above a low fraction of the robust
   range; the largest connected component and any of at least a tenth of its size; holes filled);
2. the output cube: the foreground's world bounding box, made cubic around its centre, with a two
   voxel margin; spacing = side / size;
3. the raw data (anti-alias smoothed along each raw axis when the output is coarser) is resampled
   trilinearly onto that cube (``scipy.ndimage.affine_transform``; outside the field of view = the
   scan's minimum, i.e. background);
4. the foreground is found again on the output grid (full resolution edges); intensities go to [0,1]
   (MRI: the 0.5 and 99.5 percentiles of the foreground, clipped; CT: a Hounsfield window, by default
   per body part) and everything outside the foreground is exactly 0.

There is no random step, so there is no seed: the same scan always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..errors import MoodError
from ..volumes import NIFTI_SUFFIXES, is_nifti, list_volumes, read_volume, volume_id, write_volume

RECORDS_DIR = "prepare"  # DATA/prepare/<name>.json: one record per prepared volume; also this tool's marker
SETTINGS_FILE = "settings.json"  # DATA/prepare/settings.json: the options of the run
NAMES_FILE = "names.csv"  # DATA/names.csv: name,source
RECORD_FORMAT = "mood-dpa prepare record"
RECORD_VERSION = 1

CT_WINDOWS = {"abdomen": (-160.0, 240.0), "brain": (0.0, 80.0)}  # soft-tissue and brain windows (HU)
CT_AIR_HU = -500.0  # foreground: smoothed intensity above this (air is about -1000 HU, fat about -100 HU)
MRI_PERCENTILES = (0.5, 99.5)
MRI_FOREGROUND_FRACTION = 0.05  # foreground: above lo + 5 % of (hi - lo) of the scan's robust range
SMOOTHING_MM = 2.0  # Gaussian sigma of the smoothing before the foreground threshold
KEEP_COMPONENT_FRACTION = 0.1  # keep connected components at least this fraction of the largest
COARSE_MAX_SIDE = 128  # the coarse foreground pass uses at most this many voxels along the longest side
MARGIN_VOXELS = 2  # free voxels on each side of the foreground in the output cube
MIN_SIZE, MAX_SIZE = 16, 1024


@dataclass(frozen=True)
class PrepareSettings:
    """What a ``prepare`` run does to every volume."""

    modality: str  # "mri" or "ct"
    size: int
    body: str | None = None  # "brain" or "abdomen"; picks the CT window
    window: tuple[float, float] | None = None  # CT Hounsfield window (overrides the body default)
    percentiles: tuple[float, float] = MRI_PERCENTILES  # MRI intensity percentiles of the foreground

    def __post_init__(self) -> None:
        if self.modality not in ("mri", "ct"):
            raise MoodError(f"--modality must be mri or ct, got {self.modality!r}")
        if not isinstance(self.size, (int, np.integer)) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise MoodError(f"--size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {self.size}")
        if self.body is not None and self.body not in CT_WINDOWS:
            raise MoodError(f"--body must be one of {', '.join(CT_WINDOWS)}, got {self.body!r}")
        if self.modality == "mri":
            if self.window is not None:
                raise MoodError("--window is a CT Hounsfield window; MRI intensities use --percentiles")
            lo, hi = self.percentiles
            if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo < hi <= 100.0):
                raise MoodError(f"--percentiles must be two numbers 0 <= low < high <= 100, got {lo},{hi}")
        else:
            if self.window is None and self.body is None:
                raise MoodError("--modality ct needs --body brain|abdomen (default window) or --window LOW,HIGH in HU")
            if self.window is not None:
                lo, hi = self.window
                if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                    raise MoodError(f"--window must be two finite numbers LOW < HIGH (HU), got {lo},{hi}")

    @property
    def ct_window(self) -> tuple[float, float]:
        return tuple(self.window) if self.window is not None else CT_WINDOWS[self.body]  # type: ignore[index,return-value]

    def as_dict(self) -> dict:
        return {
            "modality": self.modality,
            "size": int(self.size),
            "body": self.body,
            "window": list(self.ct_window) if self.modality == "ct" else None,
            "percentiles": list(self.percentiles) if self.modality == "mri" else None,
        }


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """``"L,H"`` -> (L, H) as floats, or a MoodError naming the option."""
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise MoodError(f"{option} must be two numbers LOW,HIGH, got {text!r}")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------- geometry


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Length in mm of one step along each voxel axis (the columns of the affine)."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def _corners(shape) -> np.ndarray:
    """The 8 corner voxel centres of a grid, homogeneous, (4, 8)."""
    ranges = [(0.0, float(n - 1)) for n in shape]
    pts = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1)
    return np.vstack([pts, np.ones((1, pts.shape[1]))])


def world_grid(lo: np.ndarray, spacing: float, shape) -> np.ndarray:
    """The affine of a world-aligned (RAS) grid with voxel 0 at ``lo`` and isotropic ``spacing``."""
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = lo
    return aff


def _resample(data: np.ndarray, index_map: np.ndarray, shape, order: int, cval: float, src_spacing, out_spacing: float):
    """Sample ``data`` at ``index_map @ output voxel`` (one affine resampling, anti-aliased when shrinking)."""
    from scipy.ndimage import affine_transform, gaussian_filter

    sigma = antialias_sigma(src_spacing, out_spacing)
    src = gaussian_filter(data, sigma, mode="nearest") if max(sigma) > 0 and order > 0 else data
    return affine_transform(
        src, index_map[:3, :3], offset=index_map[:3, 3], output_shape=tuple(int(n) for n in shape),
        order=order, mode="constant", cval=cval, prefilter=False,
    ).astype(np.float32, copy=False)


def antialias_sigma(src_spacing, out_spacing: float) -> list[float]:
    """Gaussian sigma (source voxels) per source axis before sampling at ``out_spacing`` mm (as skimage's resize)."""
    return [max(0.0, (out_spacing / float(s) - 1.0) / 2.0) for s in src_spacing]


# ---------------------------------------------------------------- foreground


def foreground_threshold(coarse: np.ndarray, settings: PrepareSettings) -> float:
    """The intensity (raw units) above which the smoothed scan is head or body."""
    if settings.modality == "ct":
        return CT_AIR_HU
    lo, hi = np.percentile(coarse, [0.5, 99.5])
    return float(lo + MRI_FOREGROUND_FRACTION * (hi - lo))


def foreground_mask(data: np.ndarray, spacing: float, threshold: float) -> tuple[np.ndarray, int]:
    """Smoothed intensity above ``threshold``, large connected components only, holes filled."""
    from scipy.ndimage import binary_fill_holes, gaussian_filter, label

    smooth = gaussian_filter(data.astype(np.float32), SMOOTHING_MM / spacing, mode="nearest")
    labels, n = label(smooth > threshold)
    if n == 0:
        return np.zeros(data.shape, dtype=bool), 0
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= KEEP_COMPONENT_FRACTION * sizes.max()) + 1
    mask = binary_fill_holes(np.isin(labels, keep))
    return mask, int(len(keep))


# ---------------------------------------------------------------- prepare


@dataclass
class Prepared:
    """One volume in the MOOD form and the record of how it was made."""

    data: np.ndarray  # float32 (size,)*3 in [0,1], background exactly 0
    affine: np.ndarray  # the output grid in world mm (RAS, isotropic)
    record: dict


def prepare_volume(data: np.ndarray, affine: np.ndarray, settings: PrepareSettings, source: str = "<memory>") -> Prepared:
    """Map one raw scan (any orientation, spacing, units) to the MOOD form; see the module docstring."""
    data = np.asarray(data, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    if data.ndim != 3:
        raise MoodError(f"{source}: expected a 3-D volume, got shape {data.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise MoodError(f"{source}: singular affine (voxel axes have no extent in world space)")
    _check_units(data, settings, source)
    n = int(settings.size)
    src_spacing = voxel_spacing(affine)
    cval = float(data.min())  # outside the field of view: the scan's own background level

    # 1. coarse world-aligned copy of the whole field of view -> foreground box in world mm
    world_corners = (affine @ _corners(data.shape))[:3]
    fov_lo, fov_hi = world_corners.min(axis=1), world_corners.max(axis=1)
    coarse_spacing = float(max(src_spacing.min(), (fov_hi - fov_lo).max() / COARSE_MAX_SIDE))
    coarse_shape = np.floor((fov_hi - fov_lo) / coarse_spacing).astype(int) + 1
    coarse_aff = world_grid(fov_lo, coarse_spacing, coarse_shape)
    coarse = _resample(data, np.linalg.inv(affine) @ coarse_aff, coarse_shape, 1, cval, src_spacing, coarse_spacing)
    threshold = foreground_threshold(coarse, settings)
    mask, _ = foreground_mask(coarse, coarse_spacing, threshold)
    if not mask.any():
        raise MoodError(f"{source}: no head or body found (no smoothed intensity above {threshold:.4g}); is --modality right?")
    idx = np.argwhere(mask)
    box_lo = fov_lo + (idx.min(axis=0) - 0.5) * coarse_spacing
    box_hi = fov_lo + (idx.max(axis=0) + 0.5) * coarse_spacing

    # 2. the output cube: centred on the box, the box's longest side plus a margin
    side = float((box_hi - box_lo).max()) * n / (n - 2 * MARGIN_VOXELS)
    spacing = side / n
    centre = (box_lo + box_hi) / 2.0
    out_aff = world_grid(centre - spacing * (n - 1) / 2.0, spacing, (n, n, n))
    index_map = np.linalg.inv(affine) @ out_aff  # output voxel -> source voxel

    # 3. one resampling of the raw data onto the cube
    out = _resample(data, index_map, (n, n, n), 1, cval, src_spacing, spacing)

    # 4. foreground at full output resolution, intensities to [0, 1], background exactly 0
    out_mask, n_components = foreground_mask(out, spacing, threshold)
    if not out_mask.any():
        raise MoodError(f"{source}: the head or body vanished on the {n}^3 grid; try a larger --size")
    if settings.modality == "ct":
        lo, hi = settings.ct_window
        intensity = {"kind": "ct_window", "low_hu": lo, "high_hu": hi, "formula": "clip((x - low_hu) / (high_hu - low_hu), 0, 1)"}
    else:
        lo, hi = (float(v) for v in np.percentile(out[out_mask], settings.percentiles))
        if not hi > lo:
            raise MoodError(f"{source}: the foreground has one intensity only ({lo:.4g}); nothing to normalise")
        intensity = {
            "kind": "mri_percentiles", "percentiles": list(settings.percentiles), "low_value": lo, "high_value": hi,
            "formula": "clip((x - low_value) / (high_value - low_value), 0, 1)",
        }
    result = np.clip((out - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    result[~out_mask] = 0.0

    src_box = index_map @ _corners((n, n, n))
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "modality": settings.modality,
        "body": settings.body,
        "source": source,
        "source_shape": [int(s) for s in data.shape],
        "source_affine": affine.tolist(),
        "source_spacing_mm": src_spacing.tolist(),
        "output_shape": [n, n, n],
        "output_affine": out_aff.tolist(),
        "output_spacing_mm": spacing,
        "output_axes": "RAS: axis 0 left->right, 1 posterior->anterior, 2 inferior->superior (world mm)",
        "index_map": index_map.tolist(),
        "index_map_doc": "homogeneous 4x4: source voxel (i,j,k,1) = index_map @ output voxel (u,v,w,1)",
        "crop_box_world_mm": {"min": box_lo.tolist(), "max": box_hi.tolist()},
        "cube_world_mm": {"centre": centre.tolist(), "side": side},
        "cube_in_source_voxels": {"min": src_box[:3].min(axis=1).tolist(), "max": src_box[:3].max(axis=1).tolist()},
        "foreground": {
            "threshold": threshold, "smoothing_mm": SMOOTHING_MM, "components_kept": n_components,
            "fraction_of_output": float(out_mask.mean()),
        },
        "resampling": {
            "interpolation": "linear", "outside_field_of_view": cval,
            "antialias_sigma_source_voxels": antialias_sigma(src_spacing, spacing),
        },
        "intensity": intensity,
    }
    return Prepared(data=result, affine=out_aff, record=record)


def _check_units(data: np.ndarray, settings: PrepareSettings, source: str) -> None:
    """Refuse a scan whose intensities cannot be in the modality's units (a silently wrong volume otherwise)."""
    low, high = float(data.min()), float(data.max())
    if settings.modality == "ct":
        if high <= CT_AIR_HU:
            raise MoodError(f"{source}: no voxel above {CT_AIR_HU:g} HU (range {low:.4g} to {high:.4g}); not a CT in Hounsfield units?")
        if low > -200.0:
            raise MoodError(
                f"{source}: no air below -200 HU (range {low:.4g} to {high:.4g}); not a CT in Hounsfield units "
                "(a scan stored with an offset needs its rescale intercept), or use --modality mri"
            )
    elif np.mean(data < CT_AIR_HU) > 0.05:
        raise MoodError(f"{source}: {100 * np.mean(data < CT_AIR_HU):.0f} % of voxels below {CT_AIR_HU:g}; this looks like a CT, use --modality ct")
    if high <= low:
        raise MoodError(f"{source}: constant volume (every voxel is {low:.4g})")


# ---------------------------------------------------------------- restore


def restore_volume(scores: np.ndarray, record: dict, order: int = 1) -> np.ndarray:
    """A MOOD-form map back on the raw scan's grid (``order`` 1 trilinear, 0 nearest); outside the cube = 0."""
    from scipy.ndimage import affine_transform

    scores = np.asarray(scores, dtype=np.float32)
    if list(scores.shape) != list(record["output_shape"]):
        raise MoodError(f"shape {scores.shape} does not match the prepared volume's {tuple(record['output_shape'])}")
    inverse = np.linalg.inv(np.asarray(record["index_map"], dtype=np.float64))  # source voxel -> output voxel
    return affine_transform(
        scores, inverse[:3, :3], offset=inverse[:3, 3], output_shape=tuple(record["source_shape"]),
        order=order, mode="constant", cval=0.0, prefilter=False,
    ).astype(np.float32, copy=False)


# ---------------------------------------------------------------- folders


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
    from ..progress import track

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
    from ..progress import track

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
    import nibabel as nib

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
    return write_volume(out / name, restored, affine, header=header)
