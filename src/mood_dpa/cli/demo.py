"""Command ``demo``: the whole pipeline on the embedded phantoms, ending in a report."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .checks import THREADS_OPTION, set_threads


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("mood_demo"), "-o", "--output", help="Folder for everything the demo makes."),
    preset: str = typer.Option("default", "--preset", help="default: about ten minutes on 2 CPU cores; long: the same "
                               "data with every model trained to early stopping (the converged numbers; hours on a "
                               "CPU, minutes on a GPU); quick: a smoke run."),
    quick: bool = typer.Option(False, "--quick", help="Same as --preset quick: a ~2-minute smoke run (tiny volumes and models; numbers mean nothing)."),
    kind: str = typer.Option("brain", "--kind", help="brain (MRI-like phantoms, axes 0, 1, 2) or abdom (CT-like, axes 0 and 2)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    device: str = typer.Option(None, "--device", help="cpu, gpu or auto (default: a GPU when present)."),
    threads: int = THREADS_OPTION,
) -> None:
    """Run the whole pipeline on embedded phantoms: fit every method, then predict, evaluate and report on held-out subjects.

    phantoms -> 'mood-dpa fit' (folds, slices, tuning set, SimCLR, DPA, 2-D segmenter, histogram baseline
    (--preset quick and long: also the plain-L1 AE and the 3-D segmenter), calibrated detectors,
    cross-method ensemble) -> synthetic anomalies on held-out
    subjects -> predict -> exact MOOD evaluation -> OUT/report/report.html.
    """
    from rich.console import Console
    from rich.table import Table

    from ..demo import run_demo
    from ..outputs import check_writable, remove_stale_temps

    # a folder not made by the demo is refused by run_demo (it has no --overwrite: it replaces its subfolders)
    from ..demo import PRESETS
    from ..errors import MoodError

    if quick:
        preset = "quick"
    if preset not in PRESETS:
        raise MoodError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    check_writable(out)
    if out.parent.is_dir():
        remove_stale_temps(out.parent, name=out.name)
    threads = set_threads(threads)
    outcome = run_demo(out, preset, seed=seed, device=device, log=typer.echo, threads=threads,
                       kind=kind)
    table = Table(title="Test-set AP (MOOD rules); chance: pixel %.4f, sample %.3f" % _chance(outcome.results))
    for col in ("method", "pixel AP", "pixel AP unseen kinds", "best Dice", "hit rate", "sample AP", "sample ROC-AUC"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=col == "method")
    for name, res in outcome.results.items():
        px, sm = res["pixel"], res["sample"]
        table.add_row(name, f"{px['ap']:.3f}", f"{res['unseen_pixel_ap']:.3f}", _f(px.get("best_dice")), _f(px.get("hit_rate")),
                      f"{sm['ap']:.3f}", f"{sm['roc_auc']:.3f}")
    kinds = list(next(iter(outcome.results.values()))["pixel"]["per_kind"])
    per_kind = Table(title="Pixel AP per anomaly kind (that kind's cases + all normal cases); * = seen in training")
    per_kind.add_column("method", no_wrap=True)
    for k in kinds:
        per_kind.add_column(k, justify="right")
    for name, res in outcome.results.items():
        per_kind.add_row(name, *(f"{res['pixel']['per_kind'][k]['ap']:.3f}{'*' if k in res['seen'] else ''}" for k in kinds))
    # never truncate a number: a narrow (or piped, 80-column) terminal wraps the long lines instead
    console = Console(width=max(Console().width, 132))
    console.print(table)
    console.print(per_kind)
    typer.echo(f"demo finished in {sum(outcome.timings.values()):.0f} s; report: {outcome.report}")


def _f(x) -> str:
    return "-" if x is None else f"{float(x):.3f}"


def _chance(results: dict) -> tuple[float, float]:
    res = next(iter(results.values()))
    px, sm = res["pixel"], res["sample"]
    return px["positives"] / max(px["positives"] + px["negatives"], 1), sm["positives"] / max(sm["cases"], 1)
