"""Command ``demo``: the whole pipeline on the embedded phantoms, ending in a report."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .checks import THREADS_OPTION, set_threads


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("mood_demo"), "-o", "--output", help="Folder for everything the demo makes."),
    quick: bool = typer.Option(False, "--quick", help="A ~2-minute smoke run (tiny volumes and models)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    device: str = typer.Option(None, "--device", help="cpu, gpu or auto (default: a GPU when present)."),
    threads: int = THREADS_OPTION,
) -> None:
    """Run phantoms -> folds -> slices -> SimCLR -> DPA per axis -> calibration -> predict -> evaluate -> report."""
    from rich.console import Console
    from rich.table import Table

    from ..demo import run_demo
    from ..outputs import check_writable, remove_stale_temps

    # a folder not made by the demo is refused by run_demo (it has no --overwrite: it replaces its subfolders)
    check_writable(out)
    if out.parent.is_dir():
        remove_stale_temps(out.parent, name=out.name)
    set_threads(threads)
    outcome = run_demo(out, "quick" if quick else "default", seed=seed, device=device, log=typer.echo)
    table = Table(title="Validation AP (MOOD rules)")
    table.add_column("method")
    table.add_column("pixel AP", justify="right")
    table.add_column("sample AP", justify="right")
    for name, res in outcome.results.items():
        table.add_row(name, f"{res['pixel']['ap']:.3f}", f"{res['sample']['ap']:.3f}")
    kinds = sorted({k for res in outcome.results.values() for k in res["pixel"]["per_kind"]})
    per_kind = Table(title="Pixel AP per anomaly kind (that kind's cases + all normal cases)")
    per_kind.add_column("method")
    for kind in kinds:
        per_kind.add_column(kind, justify="right")
    for name, res in outcome.results.items():
        per_kind.add_row(name, *(f"{res['pixel']['per_kind'][k]['ap']:.3f}" for k in kinds))
    console = Console()
    console.print(table)
    console.print(per_kind)
    typer.echo(f"demo finished in {sum(outcome.timings.values()):.0f} s; report: {outcome.report}")
