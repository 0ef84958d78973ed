"""Commands ``calibrate`` and ``submission`` (``predict`` lives in cli/evaluation.py: the one writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app


@app.command("calibrate")
def calibrate_cmd(
    ensemble: Path = typer.Option(..., "--ensemble", "-e", help="Ensemble YAML to calibrate (rewritten atomically)."),
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of NORMAL validation volumes (e.g. the validation fold)."),
    val: Optional[Path] = typer.Option(
        None, "--val", help="Labelled validation set in the MOOD toy layout (`mood-dpa synth` output): chooses the sample rule."
    ),
    val_labels: Optional[Path] = typer.Option(None, "--val-labels", help="Sample label folder (<name>.txt) if not --val/toy_label/sample."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: automatic)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per forward pass."),
    seed: int = typer.Option(0, "--seed", help="Seed of the voxel subsample the map is fitted on."),
    samples_per_volume: int = typer.Option(200_000, "--samples-per-volume", help="Foreground voxels sampled per normal volume."),
) -> None:
    """Fit the map raw score -> [0, 1] on normal volumes (and choose the sample rule on --val); store both in the ensemble."""
    from ..errors import MoodError
    from ..inference.ensemble import calibrate_ensemble

    if samples_per_volume < 2:
        raise MoodError("--samples-per-volume must be at least 2")
    info = calibrate_ensemble(
        ensemble, inputs, val_dir=val, val_labels=val_labels, device=device, batch_size=batch_size,
        seed=seed, samples_per_volume=samples_per_volume,
    )
    extra = ""
    if "sample_rule_ap" in info:
        extra = f"; sample rule {info['sample_rule']} (AP {max(info['sample_rule_ap'].values()):.3f} on {info['validation_volumes']} volumes)"
    typer.echo(
        f"calibrated {ensemble} on {info['samples']} voxels of {info['normal_volumes']} normal volumes"
        f" (raw normal max {info['raw_normal_max']:.4g}){extra} in {info['seconds']:.1f} s"
    )


@app.command("submission")
def submission_cmd(
    out: Path = typer.Option(..., "-o", "--output", help="Build-context folder to write (replaced whole on success)."),
    brain_pixel: Path = typer.Option(..., "--brain-pixel", help="Model for brain / pixel: ensemble .yaml or baseline .npz."),
    brain_sample: Path = typer.Option(..., "--brain-sample", help="Model for brain / sample."),
    abdom_pixel: Path = typer.Option(..., "--abdom-pixel", help="Model for abdomen / pixel."),
    abdom_sample: Path = typer.Option(..., "--abdom-sample", help="Model for abdomen / sample."),
    source: Optional[Path] = typer.Option(None, "--source", help="mood-dpa project folder to install in the image (default: this checkout)."),
    allow_uncalibrated: bool = typer.Option(False, "--allow-uncalibrated", help="Accept ensembles without a fitted calibration."),
) -> None:
    """Assemble the MOOD docker build context: Dockerfile, the four run scripts, the models and this package."""
    from ..inference.submission import build_submission

    info = build_submission(
        out,
        {"pixel_brain": brain_pixel, "sample_brain": brain_sample, "pixel_abdom": abdom_pixel, "sample_abdom": abdom_sample},
        source=source,
        allow_uncalibrated=allow_uncalibrated,
    )
    typer.echo(
        f"wrote the submission build context to {out} ({info['files']} files, {info['megabytes']:.1f} MB); "
        f"build it with: docker build -t mood-dpa-submission {out}"
    )
