"""One scan -> the MOOD form and a score map back (the geometry and intensity steps; see the package docstring)."""


from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import affine_transform, binary_fill_holes, gaussian_filter, label

from ...errors import MoodError

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
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise MoodError(f"{source}: the affine (voxel -> world) has NaN or infinite entries; the scan's header is broken")
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
    if not (result > 0).any():
        raise MoodError(f"{source}: every voxel maps to 0 with the intensity window [{lo:.4g}, {hi:.4g}]; is it a "
                        f"{settings.modality.upper()} scan in its units (CT: Hounsfield), and the right --body / --window?")

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
    scores = np.asarray(scores, dtype=np.float32)
    if list(scores.shape) != list(record["output_shape"]):
        raise MoodError(f"shape {scores.shape} does not match the prepared volume's {tuple(record['output_shape'])}")
    inverse = np.linalg.inv(np.asarray(record["index_map"], dtype=np.float64))  # source voxel -> output voxel
    return affine_transform(
        scores, inverse[:3, :3], offset=inverse[:3, 3], output_shape=tuple(record["source_shape"]),
        order=order, mode="constant", cval=0.0, prefilter=False,
    ).astype(np.float32, copy=False)


# ---------------------------------------------------------------- folders
