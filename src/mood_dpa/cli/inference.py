"""Commands ``ensemble``, ``calibrate`` and ``submission`` (``predict`` lives in cli/evaluation.py: the one writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_OPTION, THREADS_OPTION, check_number, range_check, set_threads


@app.command("ensemble")
def ensemble_cmd(
    models: list[Path] = typer.Argument(..., help="Model files of any methods (RUN_DIR/model.pt per axis, a baseline .npz, a volume-histogram .npz ...); grouped by method into members."),
    out: Path = typer.Option(..., "-o", "--output", help="Ensemble YAML to write (model paths are stored relative to it)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Comma-separated weight per model file (default: equal)."),
    combine: str = typer.Option("mean", "--combine", help="How a member's axis maps combine per voxel: mean, max or mean_covered."),
    member_combine: str = typer.Option("mean", "--member-combine", help="How members' calibrated maps combine: mean, max or weighted (calibrate --val chooses)."),
    background: Optional[float] = typer.Option(0.0, "--background", help="Voxels <= this intensity score 0 (background mask)."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the ensemble (default: the file name)."),
) -> None:
    """Combine model files (one method or several) into one detector file for `predict` (calibrate it next).

    Files are grouped by the method their file declares: e.g. three DPA axis files make one member, a histogram .npz another. Each member gets its own calibration; `calibrate --val` chooses how the members combine. A volume-histogram .npz (`baseline fit-volume`) is a sample-level member: no voxel map, its volume score joins the sample score as `calibrate --val` chooses (map, max or mean)."""
    from ..errors import MoodError
    from ..inference.detector import read_spec, write_ensemble
    from ..outputs import prepare_output_file

    w = None
    if weights is not None:
        try:
            w = [float(x) for x in weights.split(",")]
        except ValueError:
            raise MoodError(f"--weights {weights!r}: expected comma-separated numbers") from None
        for x in w:
            check_number("--weights", x, low=0.0, low_open=True)
        if len(w) != len(models):
            raise MoodError(f"--weights gives {len(w)} weights for {len(models)} models")
    check_number("--background", background, low=-1.0, high=1.0)
    if member_combine not in ("mean", "max", "weighted"):
        raise MoodError(f"--member-combine {member_combine!r}: expected mean, max or weighted")
    prepare_output_file(out, inputs=models)
    path = write_ensemble(out, models, w, combine=combine, member_combine=member_combine, background_threshold=background, name=name)
    members = ", ".join(f"{m.name} ({len(m.models)})" for m in read_spec(path).members)
    typer.echo(f"wrote {path} with {len(models)} model files in members {members} (combine: {combine}); "
               f"next: mood-dpa calibrate --ensemble {path} -i NORMAL_VOLUMES --val TUNING_SET")


@app.command("calibrate")
def calibrate_cmd(
    ensemble: Path = typer.Option(..., "--ensemble", "-e", help="Ensemble YAML to calibrate (rewritten atomically)."),
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of NORMAL validation volumes (e.g. the validation fold)."),
    val: Optional[Path] = typer.Option(
        None, "--val", help="Labelled tuning set in the MOOD toy layout (`mood-dpa synth` output): chooses the member, border and sample rules. Do not evaluate on it."
    ),
    val_labels: Optional[Path] = typer.Option(None, "--val-labels", help="Sample label folder (<name>.txt) if not --val/toy_label/sample."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: automatic)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per forward pass."),
    seed: int = typer.Option(0, "--seed", help="Seed of the voxel subsample the map is fitted on."),
    samples_per_volume: int = typer.Option(200_000, "--samples-per-volume", help="Foreground voxels sampled per normal volume."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV: use only the volumes of --fold from --input."),
    fold: int = typer.Option(0, "--fold", help="The fold taken from --input when --folds is given."),
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Fit the calibrations on normal volumes (and choose the member, border and sample rules on --val); store them in the detector file."""
    from ..errors import MoodError
    from ..inference.detector import calibrate_ensemble

    from ..outputs import prepare_output_file

    if samples_per_volume < 2:
        raise MoodError("--samples-per-volume must be at least 2")
    if batch_size is not None and batch_size < 1:
        raise MoodError(f"--batch-size must be at least 1, got {batch_size}")
    if not ensemble.is_file():
        raise MoodError(f"{ensemble}: no such ensemble file")
    prepare_output_file(ensemble, inputs=[inputs, val, val_labels])  # rewritten in place at the end
    set_threads(threads)
    range_check(no_range_check)
    normals = inputs
    if folds is not None:
        from ..data.folds import paths_of_split
        from ..volumes import list_volumes

        normals = paths_of_split(list_volumes(inputs), folds, fold, "val")
        if not normals:
            raise MoodError(f"{inputs}: no volume of fold {fold} of {folds}")
    info = calibrate_ensemble(
        ensemble, normals, val_dir=val, val_labels=val_labels, device=device, batch_size=batch_size,
        seed=seed, samples_per_volume=samples_per_volume,
    )
    extra = f"; members combine by {info['member_combine']}" if "member_combine" in info else ""
    if "sample_rule_ap" in info:
        extra += f"; sample rule {info['sample_rule']} (AP {max(info['sample_rule_ap'].values()):.3f} on {info['validation_volumes']} volumes)"
    if "sample_combine" in info:
        extra += f"; with the sample-level members: {info['sample_combine']} (AP {max(info['sample_combine_ap'].values()):.3f})"
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
    base_image: str = typer.Option("python:3.11-slim", "--base-image", help="The image to build on (the Dockerfile's FROM); where no registry can be reached, make one with docker/build_offline_base.sh."),
    torch_wheel: Optional[Path] = typer.Option(None, "--torch-wheel", help="A torch wheel to install in the image instead of downloading torch (e.g. a CPU build where the PyTorch index cannot be reached)."),
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Assemble the MOOD docker build context: Dockerfile, the four run scripts, the models and this package.

    Build it with `docker build -t mood-dpa-submission OUT` (torch from PyPI, with CUDA) or with `--build-arg TORCH=cpu` (the CPU-only build, a much smaller image)."""
    from ..inference.submission import build_submission, check_base_image
    from ..outputs import prepare_output_dir

    check_base_image(base_image)
    prepare_output_dir(out, inputs=[brain_pixel, brain_sample, abdom_pixel, abdom_sample], overwrite=overwrite, replace=True)

    info = build_submission(
        out,
        {"pixel_brain": brain_pixel, "sample_brain": brain_sample, "pixel_abdom": abdom_pixel, "sample_abdom": abdom_sample},
        source=source,
        allow_uncalibrated=allow_uncalibrated,
        base_image=base_image,
        torch_wheel=torch_wheel,
    )
    typer.echo(
        f"wrote the submission build context to {out} ({info['files']} files, {info['megabytes']:.1f} MB); "
        f"build it with: docker build -t mood-dpa-submission {out}"
    )
