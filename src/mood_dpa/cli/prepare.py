"""``mood-dpa prepare`` (raw scans -> the MOOD form) and ``mood-dpa restore`` (score maps -> the raw grid).

numpy, scipy and nibabel are imported inside the commands (start-up time: ``mood-dpa --help`` stays fast).
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .app import app


class Modality(str, Enum):
    mri = "mri"
    ct = "ct"


class Body(str, Enum):
    brain = "brain"
    abdomen = "abdomen"


class Interpolation(str, Enum):
    linear = "linear"
    nearest = "nearest"


@app.command("prepare")
def prepare_cmd(
    raw: Path = typer.Option(..., "-i", "--input", help="Folder of raw NIfTI scans (3-D, or 4-D with one volume), or one scan."),
    out: Path = typer.Option(..., "-o", "--output", help="New folder for the prepared volumes (must not be inside the input folder)."),
    modality: Modality = typer.Option(..., "--modality", help="mri (robust-percentile intensities) or ct (Hounsfield window)."),
    size: int = typer.Option(..., "--size", "-s", help="Side of the output cubes in voxels (MOOD: brain 256, abdomen 512)."),
    body: Optional[Body] = typer.Option(None, "--body", help="Body part; picks the CT window: brain [0,80] HU, abdomen [-160,240] HU."),
    window: Optional[str] = typer.Option(None, "--window", help="CT window LOW,HIGH in HU mapped to [0,1] (overrides --body's)."),
    percentiles: str = typer.Option("0.5,99.5", "--percentiles", help="MRI: foreground percentiles LOW,HIGH mapped to 0 and 1 (clipped)."),
    keep_names: bool = typer.Option(
        False, "--keep-names", help="Name outputs after the scans (sub01.nii.gz) instead of 00000.nii.gz, ... (names may not contain '_' or '.')."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty output folder."),
    gzip_level: int = typer.Option(1, "--gzip-level", min=0, max=9, help="gzip compression level 0-9 of the .nii.gz files."),
) -> None:
    """Bring raw MRI or CT scans (any orientation, spacing, units) into the MOOD form the models expect.

    Each scan is resampled ONCE onto a cube in world coordinates: axes R, A, S (0 left-right, 1 posterior-anterior, 2 inferior-superior), isotropic voxels, centred on the head or body and just large enough to hold it (found on the smoothed intensity: CT above -500 HU, MRI above 5 % of the robust range; largest connected parts), SIZE voxels a side. Intensities go to [0,1] (MRI: the foreground's 0.5 and 99.5 percentiles; CT: the Hounsfield window) and everything outside the head or body is exactly 0.

    Writes OUT/00000.nii.gz, ... in the sorted order of the scans (MOOD's naming, which every other command maps to volumes safely; OUT/names.csv says which scan each is), and OUT/prepare/<name>.json: the source, its shape and affine, the 4x4 index map from output voxel to source voxel, the crop box and the intensity mapping. `mood-dpa restore` uses these records to put score maps back onto the raw scans.
    """
    from ..data.prepare import PrepareSettings, parse_pair, prepare_folder

    settings = PrepareSettings(
        modality=modality.value,
        size=size,
        body=body.value if body is not None else None,
        window=parse_pair(window, "--window") if window is not None else None,
        percentiles=parse_pair(percentiles, "--percentiles"),
    )
    start = time.perf_counter()
    written = prepare_folder(raw, out, settings, keep_names=keep_names, overwrite=overwrite, compresslevel=gzip_level)
    typer.echo(f"prepared {len(written)} {modality.value} scans as {size}^3 volumes in {out} (records in {out / 'prepare'}) in {time.perf_counter() - start:.1f} s")


@app.command("restore")
def restore_cmd(
    scores: Path = typer.Option(..., "-i", "--input", help="Folder of score maps in the MOOD form (e.g. predict's output), or one map."),
    out: Path = typer.Option(..., "-o", "--output", help="New folder for the maps on the raw scans' grids."),
    records: Path = typer.Option(..., "--records", help="The records prepare wrote (DATA/prepare)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", help="Folder of the raw scans: each is checked against its record and its header copied."
    ),
    interpolation: Interpolation = typer.Option(Interpolation.linear, "--interpolation", help="linear (score maps) or nearest (label maps)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty output folder."),
) -> None:
    """Put score maps back onto the raw scans they were prepared from, to view them over the raw scan.

    A map named like a prepared volume (00003.nii.gz, or 00003_anything.nii.gz) is resampled with the inverse of that volume's index map onto its raw scan's grid: the output has exactly the raw scan's shape and affine, and 0 outside the prepared cube. It is named after the raw scan (sub01.nii.gz, or sub01_anything.nii.gz). Sample-score .txt files are not touched.
    """
    from ..data.prepare import restore_folder

    start = time.perf_counter()
    order = 1 if interpolation == Interpolation.linear else 0
    written = restore_folder(scores, out, records, reference=reference, order=order, overwrite=overwrite)
    typer.echo(f"restored {len(written)} maps onto their raw scans' grids in {out} in {time.perf_counter() - start:.1f} s")
