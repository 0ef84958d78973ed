"""The whole pipeline in one command: ``fit`` (healthy volumes -> calibrated detectors) and ``demo`` (fit, then
predict, evaluate and report on held-out phantom subjects).

Library modules are imported inside the commands (start-up time: ``mood-dpa --help`` must not load torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..methods.registry import recipes
from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_OPTION, THREADS_OPTION, device_option, range_check, seed_option, set_threads


@app.command("fit")
def fit_cmd(
    data: Path = typer.Option(..., "-i", "--input", help="Folder of training volumes in MOOD form (see 'mood-dpa prepare')."),
    out: Path = typer.Option(..., "-o", "--output", help="Folder for folds, slice stores, runs, detectors and the report."),
    preset: str = typer.Option("demo", "--preset", help="quick | demo | cpu | long | seed: model sizes and budgets (quick: a smoke run; demo: the demo's CPU budget at 64^3; cpu: the demo's shapes trained to early stopping; long: cpu's sizes for every method; seed: the MOOD-scale configs, a GPU)."),
    method: Optional[str] = typer.Option(None, "--method",
                                         help=f"Methods to train: all, or a comma list of {', '.join(recipes())} "
                                              "(default: the preset's)."),
    kind: str = typer.Option("brain", "--kind", help="brain (axes 0, 1, 2) or abdom (axes 0 and 2, as the seed)."),
    seed: int = seed_option("Seed of every random step."),
    device: Optional[str] = device_option("auto (default: a GPU when present), cpu or gpu (cuda).", index=False),
    threads: Optional[int] = THREADS_OPTION,
    report: bool = typer.Option(True, "--report/--no-report", help="Write the validation report on the tuning set."),
    held_out: Optional[str] = typer.Option(None, "--held-out", help="Family-trained methods (the segmenters): none, each (one run without each training family, validated on it, the runs averaged) or groups like fpi+poisson,deform+lesion (default: the preset's)."),
    tuning_kinds: Optional[str] = typer.Option(None, "--tuning-kinds", help="Choose the rules on a tuning set of these evaluation kinds of 'synth' (e.g. local) instead of the training anomaly families (the default: no evaluation kind takes part in any choice)."),
    flips: Optional[bool] = typer.Option(None, "--flips/--no-flips", help="Let the tuning set choose test-time flips for every detector (default: the preset's)."),
    tuning_appearance: float = typer.Option(0.0, "--tuning-appearance", min=0.0, max=1.0, help="Share of the tuning set's volumes given another scanner's look (gamma, contrast, bias field, noise, blur; the same look for a volume's normal and anomalous copies), so member weights and rules are chosen on more than one style (0: one look)."),
    standardise: Optional[bool] = typer.Option(None, "--standardise/--no-standardise", help="Every detector maps each volume's foreground intensities onto the training volumes' percentile landmarks before its voxel-map members score it (undoes a new scanner's global contrast and gamma; default: on in every preset; see README 'New scanners')."),
    appearance_twin: float = typer.Option(0.0, "--appearance-twin", min=0.0, max=1.0, help="Train every learned method once more with this share of its training images in another scanner's look (gamma, contrast, bias field, noise, blur) and join the twin as a member of its own (<method>+appearance): better on new scanners, at twice the training time (0: off)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", metavar="METHOD.KEY=VALUE",
                                             help="Override a method's config, e.g. --set segmenter2d.optim.max_steps=5000 (or simclr.KEY=VALUE). Repeatable."),
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
                      report=report, overwrite=overwrite, overrides=set_ or (), held_out=held_out, tuning_kinds=tuning_kinds,
                      flips=flips, tuning_appearance=tuning_appearance, standardise=standardise,
                      appearance_twin=appearance_twin, log=typer.echo)
    for name, path in outcome.detectors.items():
        typer.echo(f"  detector {name}: {path}")
    if outcome.report is not None:
        typer.echo(f"  validation report (tuning set, optimistic): {outcome.report}")
    typer.echo(f"fit: done in {sum(outcome.timings.values()):.0f} s; detector for 'mood-dpa predict': {outcome.detector}")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("mood_demo"), "-o", "--output", help="Folder for everything the demo makes."),
    preset: str = typer.Option("default", "--preset", help="default: about thirteen minutes on 2 CPU cores; long: the same "
                               "data with every model trained to early stopping (the converged numbers; hours on a "
                               "CPU, minutes on a GPU); quick: a smoke run."),
    quick: bool = typer.Option(False, "--quick", help="Same as --preset quick: a ~2-minute smoke run (tiny volumes and models; numbers mean nothing)."),
    kind: str = typer.Option("brain", "--kind", help="brain (MRI-like phantoms, axes 0, 1, 2) or abdom (CT-like, axes 0 and 2)."),
    seed: int = seed_option("Seed of every random step."),
    device: Optional[str] = device_option("auto (default: a GPU when present), cpu or gpu (cuda).", index=False),
    threads: int = THREADS_OPTION,
) -> None:
    """Run the whole pipeline on embedded phantoms: fit every method, then predict, evaluate and report on held-out subjects.

    phantoms -> 'mood-dpa fit' (folds, slices, family tuning set, the 2-D segmenter, the voxel and volume
    histogram baselines; --preset quick and long: also SimCLR, the DPA, the plain-L1 AE and the 3-D
    segmenter; calibrated detectors, the cross-method detector) -> synthetic anomalies (local and global
    kinds) on held-out subjects, and on the same subjects through a new scanner -> predict -> exact MOOD
    evaluation -> OUT/report/report.html.
    """
    from ..demo import PRESETS, run_demo
    from ..errors import MoodError
    from ..outputs import check_writable, remove_stale_temps

    # a folder not made by the demo is refused by run_demo (it has no --overwrite: it replaces its subfolders)
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
    results = outcome.results
    tables = [_headline_table("Held-out test set (MOOD rules)", {n: r for n, r in results.items()})]
    if all("new_scanner" in r for r in results.values()):
        tables.append(_headline_table("The same on a new scanner (phantoms --style shifted)",
                                      {n: r["new_scanner"] for n, r in results.items()}))
    kinds = [k for k, v in next(iter(outcome.results.values()))["pixel"]["per_kind"].items() if v.get("scope") != "global"]
    per_kind = Table(title="Pixel AP per local anomaly kind (that kind's cases + all normal cases); * = seen in training")
    per_kind.add_column("method", no_wrap=True)
    for k in kinds:
        per_kind.add_column(k, justify="right")
    for name, res in outcome.results.items():
        per_kind.add_row(name, *(f"{res['pixel']['per_kind'][k]['ap']:.3f}{'*' if k in res['seen'] else ''}" for k in kinds))
    # never truncate a number: a narrow (or piped, 80-column) terminal wraps the long lines instead
    console = Console(width=max(Console().width, 132))
    for table in tables:
        console.print(table)
    console.print(per_kind)
    typer.echo(f"demo finished in {sum(outcome.timings.values()):.0f} s; report: {outcome.report}")


def _headline_table(title: str, results: dict) -> Table:
    """One row per detector: the demo's headline numbers on one test set."""
    first = next(iter(results.values()))["headline"]
    table = Table(title=f"{title}. Pixel: the local kinds, chance AP {first['pixel_chance']:.4f}; "
                        f"sample: chance AP {first['sample_chance']:.3f}, ROC-AUC 0.5")
    for col in ("method", "pixel AP", "pixel AP unseen kinds", "best Dice", "hit rate", "sample AP",
                "sample ROC-AUC local kinds", "sample ROC-AUC global kinds"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=col == "method")
    for name, res in results.items():
        h = res["headline"]
        table.add_row(name, _f(h["pixel_ap"]), _f(res["unseen_pixel_ap"]), _f(h["best_dice"]), _f(h["hit_rate"]),
                      _f(h["sample_ap"]), _f(h["sample_auc_local"]), _f(h["sample_auc_global"]))
    return table


def _f(x) -> str:
    return "-" if x is None else f"{float(x):.3f}"
