"""Commands ``slices`` and ``folds``: the data preparation steps of the seed (save_2D, create_folds)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_OPTION, THREADS_OPTION, check_number, range_check, set_threads


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
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle."),
) -> None:
    """Split volumes into K folds, seeded (the seed's create_folds); fold 0 is the usual validation fold."""
    from collections import Counter

    from ..data.folds import make_folds, write_folds_csv
    from ..outputs import prepare_output_file
    from ..volumes import list_volumes

    files = list_volumes(inputs)
    prepare_output_file(out, inputs=[inputs])
    folds = make_folds([f.name for f in files], n_folds, seed)
    write_folds_csv(out, folds)
    sizes = Counter(folds.values())
    typer.echo(f"wrote {len(files)} volumes in {n_folds} folds (sizes {min(sizes.values())}-{max(sizes.values())}) to {out}")
