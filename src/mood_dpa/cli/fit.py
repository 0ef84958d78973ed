"""Command ``fit``: from a folder of volumes to a calibrated detector in one resumable command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_OPTION, THREADS_OPTION, range_check, set_threads


@app.command("fit")
def fit_cmd(
    data: Path = typer.Option(..., "-i", "--input", help="Folder of training volumes in MOOD form (see 'mood-dpa prepare')."),
    out: Path = typer.Option(..., "-o", "--output", help="Folder for folds, slice stores, runs, detectors and the report."),
    preset: str = typer.Option("demo", "--preset", help="quick | demo | cpu | long | seed: model sizes and budgets (quick: a smoke run; demo: ten CPU minutes at 64^3; cpu: the demo's shapes trained to early stopping; long: cpu's sizes for every method; seed: the MOOD-scale configs, a GPU)."),
    method: Optional[str] = typer.Option(None, "--method",
                                         help="Methods to train: all, or a comma list of histogram, dpa, l1, segmenter2d, "
                                              "segmenter3d (default: the preset's)."),
    kind: str = typer.Option("brain", "--kind", help="brain (axes 0, 1, 2) or abdom (axes 0 and 2, as the seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default: a GPU when present), cpu or gpu."),
    threads: Optional[int] = THREADS_OPTION,
    report: bool = typer.Option(True, "--report/--no-report", help="Write the validation report on the tuning set."),
    overwrite: bool = OVERWRITE_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Train detectors on healthy volumes: folds -> slices -> tuning set -> SimCLR -> models -> calibrated detectors.

    Rerun the same command after a kill or a crash: finished stages are skipped and an interrupted
    training continues from its last checkpoint. Ends with OUT/detector.yaml (all methods combined;
    with one method, OUT/detectors/METHOD.yaml) for 'mood-dpa predict'.
    """
    from ..fit import run_fit

    threads = set_threads(threads)
    range_check(no_range_check)
    outcome = run_fit(data, out, preset=preset, methods=method, kind=kind, seed=seed, device=device, threads=threads,
                      report=report, overwrite=overwrite, log=typer.echo)
    for name, path in outcome.detectors.items():
        typer.echo(f"  detector {name}: {path}")
    if outcome.report is not None:
        typer.echo(f"  validation report (tuning set, optimistic): {outcome.report}")
    typer.echo(f"fit: done in {sum(outcome.timings.values()):.0f} s; detector for 'mood-dpa predict': {outcome.detector}")
