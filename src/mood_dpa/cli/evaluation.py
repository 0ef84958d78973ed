"""Commands that judge and show results: ``evaluate`` (the exact MOOD evaluator) and ``show`` (three orthogonal slices with a mask and a heat map).

Library modules are imported inside the commands (start-up time: ``mood-dpa --help`` must not load torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MoodError
from .app import app
from .checks import OVERWRITE_FILE_OPTION, THREADS_OPTION, seed_option, set_threads


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predictions (same file names as the labels)."),
    labels: Path = typer.Option(..., "--labels", help="Label folder: toy_label/<task>, toy_label, or the synth output folder."),
    task: str = typer.Option(..., "--task", help="pixel or sample."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="manifest.csv of `synth`: adds AP per anomaly kind."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Case resamples for a mean and 95 % interval of AP (0 = off)."),
    seed: int = seed_option("Seed of the bootstrap."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON to this file (not inside --pred or --labels)."),
    threads: int = THREADS_OPTION,
    overwrite: bool = OVERWRITE_FILE_OPTION,
) -> None:
    """Score predictions exactly as the MOOD challenge does (pooled voxel AP, or AP over cases)."""
    from ..evaluation.evaluate import MAX_BOOTSTRAP, evaluate_folder, result_table, write_json
    from ..outputs import claim_output_file, prepare_output_file
    from ..progress import console

    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise MoodError(f"--bootstrap {bootstrap}: expected 0 (off) to {MAX_BOOTSTRAP} case resamples")
    if task not in ("pixel", "sample"):
        raise MoodError(f"--task {task!r}: expected pixel or sample")
    if json_path is not None:
        prepare_output_file(json_path, inputs=[pred, labels, manifest], overwrite=overwrite)
    set_threads(threads)

    result = evaluate_folder(pred, labels, task, manifest=manifest, bootstrap=bootstrap, seed=seed)
    console.print(result_table(result))
    if json_path is not None:
        claim_output_file(write_json(result, json_path))
    ap = "undefined" if result.ap != result.ap else f"{result.ap:.4f}"
    extra = f", {len(result.missing)} missing/unusable predictions" if result.missing else ""
    typer.echo(f"{task} AP {ap} over {result.cases} cases ({result.positives} positive {'voxels' if task == 'pixel' else 'cases'}){extra}")
    if result.tuning_warning:  # repeated last, where it cannot scroll away above the table
        typer.echo(f"WARNING: {result.tuning_warning}", err=True)


@app.command("show")
def show(
    volume: Path = typer.Argument(..., help="The volume to draw (.nii or .nii.gz)."),
    out_png: Path = typer.Option(..., "--out", "-o", help="The picture to write (.png)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="A label volume of the same shape, drawn as a red contour; slices go through its centre."),
    scores: Optional[Path] = typer.Option(None, "--scores", help="A score volume of the same shape, drawn as a heat map with a colour bar."),
    title: Optional[str] = typer.Option(None, "--title", help="Title above the picture (default: the file name)."),
    center: Optional[str] = typer.Option(None, "--center", help="Voxel I,J,K the three slices go through (default: the mask's centre, else the middle)."),
    log_scores: bool = typer.Option(False, "--log-scores", help="Calibrated scores on a log colour scale (1e-4 to 1): shows how a voxel ranks among normal voxels."),
    overwrite: bool = OVERWRITE_FILE_OPTION,
) -> None:
    """Draw three orthogonal slices of a volume, with an optional mask contour and score heat map."""
    from ..outputs import claim_output_file, prepare_output_file
    from ..viz import show_volume
    from ..volumes import read_volume

    if not str(out_png).lower().endswith(".png"):
        raise MoodError(f"{out_png}: the picture must end in .png")
    prepare_output_file(out_png, inputs=[volume, mask, scores], overwrite=overwrite)
    vol = read_volume(volume)
    msk = read_volume(mask).data if mask is not None else None
    scr = read_volume(scores).data if scores is not None else None
    for name, path, arr in (("mask", mask, msk), ("scores", scores, scr)):
        if arr is not None and arr.shape != vol.data.shape:
            raise MoodError(f"{path}: {name} shape {arr.shape} does not match {volume} shape {vol.data.shape}")
    centre = None
    if center is not None:
        try:
            centre = tuple(int(v) for v in center.split(","))
        except ValueError:
            centre = ()
        if len(centre) != 3:
            raise MoodError(f"--center must be three voxel indices I,J,K, got {center!r}")
    claim_output_file(show_volume(vol.data, out_png, mask=msk, scores=scr, title=title or vol.name, center=centre, log_scores=log_scores))
    typer.echo(f"wrote {out_png} ({'x'.join(map(str, vol.data.shape))} volume)")
