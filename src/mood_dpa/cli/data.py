"""Commands of the data area: ``slices``, ``folds`` and ``synth`` (the seed's save_2D, create_folds and synthetic validation sets).

Library modules are imported inside the commands (start-up time: ``mood-dpa --help`` must not load torch).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import MoodError
from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_FILE_OPTION, OVERWRITE_OPTION, THREADS_OPTION, check_number, range_check, seed_option, set_threads


@app.command("slices")
def slices_cmd(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of training volumes (*.nii.gz)."),
    out: Path = typer.Option(..., "-o", "--output", help="Store folder to write (replaced whole on success)."),
    axis: int = typer.Option(..., "--axis", min=0, max=2, help="Axis to slice along: 0, 1 or 2."),
    size: int = typer.Option(128, "--size", help="Slice side after the antialiased resize."),
    min_fraction: float = typer.Option(
        4000 / 65536, "--min-fraction", help="Keep a slice when at least this fraction of its pixels is foreground (seed: 4000/256^2)."
    ),
    threshold: float = typer.Option(0.0, "--threshold", help="A pixel is foreground when its value is above this."),
    overwrite: bool = OVERWRITE_OPTION,
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Slice volumes along one axis into a memory-mappable store (the seed's save_2D); layout: docs/ARCHITECTURE.md."""
    from ..data.slices import SliceRule, build_store
    from ..outputs import prepare_output_dir

    check_number("--min-fraction", min_fraction, low=0.0, high=1.0)
    check_number("--threshold", threshold, low=-1.0, high=1.0)
    prepare_output_dir(out, inputs=[inputs], overwrite=overwrite, replace=True)
    set_threads(threads)
    range_check(no_range_check)

    start = time.perf_counter()
    store = build_store(inputs, out, axis=axis, size=size, rule=SliceRule(min_fraction=min_fraction, threshold=threshold))
    n_vol = len(store.meta["volumes"])
    typer.echo(f"wrote {len(store)} slices of {size}x{size} from {n_vol} volumes (axis {axis}) to {out} in {time.perf_counter() - start:.1f} s")


@app.command("folds")
def folds_cmd(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of volumes (*.nii.gz)."),
    out: Path = typer.Option(..., "-o", "--output", help="CSV to write (filename,test_fold)."),
    n_folds: int = typer.Option(10, "--n-folds", help="Number of folds (the seed used 10)."),
    seed: int = seed_option("Seed of the shuffle."),
    overwrite: bool = OVERWRITE_FILE_OPTION,
) -> None:
    """Split volumes into K folds, seeded (the seed's create_folds); fold 0 is the usual validation fold."""
    from collections import Counter

    from ..data.folds import make_folds, write_folds_csv
    from ..outputs import claim_output_file, prepare_output_file
    from ..volumes import check_volume_ids, list_volumes

    files = list_volumes(inputs)
    check_volume_ids(files)
    prepare_output_file(out, inputs=[inputs], overwrite=overwrite)
    folds = make_folds([f.name for f in files], n_folds, seed)
    claim_output_file(write_folds_csv(out, folds))
    sizes = Counter(folds.values())
    typer.echo(f"wrote {len(files)} volumes in {n_folds} folds (sizes {min(sizes.values())}-{max(sizes.values())}) to {out}")


@app.command()
def synth(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of healthy volumes (*.nii.gz)."),
    out: Path = typer.Option(..., "-o", "--output", help="Output folder (MOOD toy layout); replaced atomically."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV (filename,test_fold): use only the volumes of --fold."),
    fold: int = typer.Option(0, "--fold", help="Which fold to take from --folds."),
    kinds: str = typer.Option("local", "--kinds", help="Comma-separated kinds or groups: local (default: every kind where a region changes), global (the whole volume changes) or all; an unknown name lists every kind (they are described in README.md)."),
    per_volume: str = typer.Option("1-3", "--per-volume", help="Anomaly regions per anomalous case: a count (2) or a range (1-3)."),
    cases_per_volume: Optional[int] = typer.Option(None, "--cases-per-volume", help="Anomalous cases per volume, kinds drawn at random (default: one per kind)."),
    shape: Optional[str] = typer.Option(None, "--shape", help="Force the region shape: sphere, ellipsoid or smooth (default: random)."),
    edge: str = typer.Option("mixed", "--edge", help="Region edges: soft, hard or mixed (drawn per region)."),
    seed: int = seed_option("Random seed; the same seed writes the same bytes."),
    overwrite: bool = OVERWRITE_OPTION,
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Make a validation set with synthetic anomalies: OUT/toy, OUT/toy_label/{pixel,sample}, OUT/manifest.csv."""
    from ..data.folds import paths_of_split
    from ..data.synth import make_synthetic_set
    from ..outputs import prepare_output_dir
    from ..volumes import check_volume_ids, list_volumes

    edges = {"soft": True, "hard": False, "mixed": None}
    if edge not in edges:
        raise MoodError(f"--edge {edge!r}: expected soft, hard or mixed")
    if cases_per_volume is not None and cases_per_volume < 1:
        raise MoodError(f"--cases-per-volume must be at least 1, got {cases_per_volume}")
    prepare_output_dir(out, inputs=[inputs, folds], overwrite=overwrite, replace=True)
    set_threads(threads)
    range_check(no_range_check)
    paths = list_volumes(inputs)
    check_volume_ids(paths)
    if folds is not None:
        paths = paths_of_split(paths, folds, fold, "val")
        if not paths:
            raise MoodError(f"{folds}: no volume of {inputs} is in fold {fold}")
    rows = make_synthetic_set(paths, out, kinds, per_volume, seed, cases_per_volume=cases_per_volume, shape=shape, soft=edges[edge])
    anomalous = sum(1 for r in rows if r["label"])
    typer.echo(f"wrote {len(rows)} cases ({anomalous} anomalous, {len(rows) - anomalous} normal) from {len(paths)} volumes to {out}")
