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

from .folders import check_output_folder, list_inputs, stem, output_names, prepare_folder, load_record, find_record, restored_name, restore_folder
from .volume import PrepareSettings, parse_pair, voxel_spacing, world_grid, antialias_sigma, foreground_threshold, foreground_mask, Prepared, prepare_volume, restore_volume, RECORDS_DIR, SETTINGS_FILE, NAMES_FILE, RECORD_FORMAT, RECORD_VERSION, CT_WINDOWS, CT_AIR_HU, MRI_PERCENTILES, MRI_FOREGROUND_FRACTION, SMOOTHING_MM, KEEP_COMPONENT_FRACTION, COARSE_MAX_SIDE, MARGIN_VOXELS

__all__ = ['COARSE_MAX_SIDE', 'CT_AIR_HU', 'CT_WINDOWS', 'KEEP_COMPONENT_FRACTION', 'MARGIN_VOXELS', 'MRI_FOREGROUND_FRACTION', 'MRI_PERCENTILES', 'NAMES_FILE', 'PrepareSettings', 'Prepared', 'RECORDS_DIR', 'RECORD_FORMAT', 'RECORD_VERSION', 'SETTINGS_FILE', 'SMOOTHING_MM', 'antialias_sigma', 'check_output_folder', 'find_record', 'foreground_mask', 'foreground_threshold', 'list_inputs', 'load_record', 'output_names', 'parse_pair', 'prepare_folder', 'prepare_volume', 'restore_folder', 'restore_volume', 'restored_name', 'stem', 'voxel_spacing', 'world_grid']
