"""``mood-dpa phantoms``: the embedded data (healthy phantom populations, scanner styles, several scans per subject).

numpy, scipy and matplotlib are imported inside the commands (start-up time: ``mood-dpa --help`` stays fast).
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import MoodError
from .app import app
from .checks import OVERWRITE_OPTION, seed_option


class Kind(str, Enum):
    brain = "brain"
    abdom = "abdom"


@app.command("phantoms")
def phantoms(
    kind: Kind = typer.Option(..., "--kind", help="brain (T1-like MRI, skull-stripped) or abdom (CT-like abdomen)."),
    count: int = typer.Option(..., "--count", "-n", help="How many subjects to write (00000.nii.gz, 00001.nii.gz, ...)."),
    size: int = typer.Option(64, "--size", "-s", help="Side of the cubic volumes in voxels, 32 to 512 (MOOD: brain 256, abdom 512)."),
    seed: int = seed_option("Population seed; subject k is the same whatever --count is."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder (created if needed)."),
    gzip_level: int = typer.Option(1, "--gzip-level", help="gzip compression level 0-9 of the .nii.gz files."),
    start: int = typer.Option(0, "--start", help="First subject index: held-out subjects, e.g. --start 40 after 40 training subjects."),
    style: Optional[str] = typer.Option(None, "--style", help="The scanner and population: train (default, the usual population), shifted (a held-out scanner: every factor outside the training range), one factor shifted alone (contrast, gamma, bias, noise, blur, scale, shape, pose), or a YAML file of ranges (README: Usage: the embedded data)."),
    scans: Optional[int] = typer.Option(None, "--scans", help="K scans of each subject (same anatomy, new acquisition each), written as <subject>-<scan>.nii.gz: e.g. --count 2 --scans 20 gives 40 volumes of 2 subjects."),
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Write a population of synthetic healthy volumes (the embedded data every demo uses).

    Brains: folded cortex, white matter, CSF, ventricles, deep grey nuclei; T1-like contrast, skull-stripped.

    Abdomens: skin, fat, muscle, spine, ribs, liver, spleen, kidneys, aorta, bowel with gas; CT-like.

    Subjects differ in shape, size, pose, contrast, bias field, texture and noise; the same arguments always give the same bytes. --style draws them from another scanner's and population's ranges; --scans makes several acquisitions of each subject. Axes: 0 left-right, 1 posterior-anterior, 2 inferior-superior (axial slices are volume[:, :, k]); 1 mm voxels, intensities in [0, 1], background exactly 0.
    """
    from ..data.phantoms import resolve_style, write_phantoms

    from ..outputs import prepare_output_dir

    if count < 1:
        raise MoodError(f"--count must be at least 1, got {count}")
    if scans is not None and scans < 1:
        raise MoodError(f"--scans must be at least 1, got {scans}")
    chosen = resolve_style(style)
    prepare_output_dir(out_dir, overwrite=overwrite)
    t0 = time.perf_counter()
    paths = write_phantoms(kind.value, count, size, seed, out_dir, compresslevel=gzip_level, start=start, style=chosen,
                           scans=scans)
    elapsed = time.perf_counter() - t0
    what = f"{kind.value} phantoms" if style is None else f"{kind.value} phantoms in style {chosen.name}"
    typer.echo(f"wrote {len(paths)} {what} of {size}^3 to {out_dir} in {elapsed:.1f} s")
