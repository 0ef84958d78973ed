"""Commands that make and tune detector files: ``ensemble`` (model files -> one detector file) and ``calibrate``.

Library modules are imported inside the commands (start-up time: ``mood-dpa --help`` must not load torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MoodError
from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_FILE_OPTION, THREADS_OPTION, check_number, device_option, range_check, seed_option, set_threads


@app.command("ensemble")
def ensemble_cmd(
    models: list[Path] = typer.Argument(..., help="Model files of any methods (RUN_DIR/model.pt per axis, a baseline .npz, a volume-histogram .npz ...); grouped by method into members."),
    out: Path = typer.Option(..., "-o", "--output", help="Detector file (.yaml) to write (model paths are stored relative to it)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Comma-separated weight per model file (default: equal)."),
    combine: str = typer.Option("mean", "--combine", help="How a member's axis maps combine per voxel (mood_dpa.scoring.combine; default mean); an unknown rule lists them."),
    member_combine: str = typer.Option("mean", "--member-combine", help="How members' calibrated maps combine (mood_dpa.inference.detector; default mean); calibrate --val chooses."),
    background: Optional[float] = typer.Option(0.0, "--background", help="Voxels <= this intensity score 0 (background mask)."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the detector (default: the file name)."),
    overwrite: bool = OVERWRITE_FILE_OPTION,
) -> None:
    """Combine model files (one method or several) into one detector file for `predict` (calibrate it next).

    Files are grouped by the method their file declares: e.g. three DPA axis files make one member, a histogram .npz another. Each member gets its own calibration; `calibrate --val` chooses how the members combine. A volume-histogram .npz (`baseline fit-volume`) is a sample-level member: no voxel map, its volume score joins the sample score as `calibrate --val` chooses (map, max or mean)."""
    from ..inference.detector import MEMBER_RULES
    from ..inference.detector_file import read_spec
    from ..inference.loading import write_detector_file
    from ..outputs import claim_output_file, prepare_output_file
    from ..scoring.combine import COMBINE_RULES

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
    if member_combine not in MEMBER_RULES:
        raise MoodError(f"--member-combine {member_combine!r}: expected {' or '.join(MEMBER_RULES)}")
    if combine not in COMBINE_RULES:
        raise MoodError(f"--combine {combine!r}: expected {' or '.join(COMBINE_RULES)}")
    if not str(out).endswith((".yaml", ".yml")):
        raise MoodError(f"{out}: a detector file must end in .yaml or .yml")
    prepare_output_file(out, inputs=models, overwrite=overwrite)
    path = write_detector_file(out, models, w, combine=combine, member_combine=member_combine, background_threshold=background, name=name)
    claim_output_file(path)
    members = ", ".join(f"{m.name} ({len(m.models)})" for m in read_spec(path).members)
    typer.echo(f"wrote {path} with {len(models)} model files in members {members} (combine: {combine}); "
               f"next: mood-dpa calibrate --detector {path} -i NORMAL_VOLUMES --val TUNING_SET")


@app.command("calibrate")
def calibrate_cmd(
    detector: Path = typer.Option(..., "--detector", "-d", "--ensemble", "-e", help="Detector file (.yaml) to calibrate (rewritten atomically; --ensemble/-e is the old name)."),
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of NORMAL validation volumes (e.g. the validation fold)."),
    val: Optional[Path] = typer.Option(
        None, "--val", help="Labelled tuning set in the MOOD toy layout (`mood-dpa synth` output): chooses the member, border and sample rules. Do not evaluate on it."
    ),
    val_labels: Optional[Path] = typer.Option(None, "--val-labels", help="Sample label folder (<name>.txt) if not --val/toy_label/sample."),
    device: Optional[str] = device_option("auto (default: a GPU when present), cpu, gpu, cuda or cuda:N."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per forward pass."),
    seed: int = seed_option("Seed of the voxel subsample the map is fitted on."),
    samples_per_volume: int = typer.Option(200_000, "--samples-per-volume", help="Foreground voxels sampled per normal volume."),
    flips: bool = typer.Option(False, "--flips/--no-flips", help="Let --val choose each member's test-time flips (none, left-right, every axis: 2-4x the scoring time) before calibrating."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV: use only the volumes of --fold from --input."),
    fold: int = typer.Option(0, "--fold", help="The fold taken from --input when --folds is given."),
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Fit the calibrations on normal volumes (and choose the member, border and sample rules on --val); store them in the detector file."""
    from ..data.folds import paths_of_split
    from ..inference.tuning import FLIP_CANDIDATES, calibrate_detector_file
    from ..outputs import claim_output_file, prepare_output_file
    from ..volumes import list_volumes

    if samples_per_volume < 2:
        raise MoodError("--samples-per-volume must be at least 2")
    if batch_size is not None and batch_size < 1:
        raise MoodError(f"--batch-size must be at least 1, got {batch_size}")
    if not detector.is_file():
        raise MoodError(f"{detector}: no such detector file")
    # the detector file is this command's input and output: it is rewritten in place at the end
    prepare_output_file(detector, inputs=[inputs, val, val_labels], overwrite=True)
    set_threads(threads)
    range_check(no_range_check)
    normals = inputs
    if folds is not None:
        normals = paths_of_split(list_volumes(inputs), folds, fold, "val")
        if not normals:
            raise MoodError(f"{inputs}: no volume of fold {fold} of {folds}")
    info = calibrate_detector_file(
        detector, normals, val_dir=val, val_labels=val_labels, device=device, batch_size=batch_size,
        seed=seed, samples_per_volume=samples_per_volume, flip_candidates=FLIP_CANDIDATES if flips else None,
    )
    claim_output_file(detector)
    extra = f"; members combine by {info['member_combine']}" if "member_combine" in info else ""
    if "sample_rule_ap" in info:
        extra += f"; sample rule {info['sample_rule']} (AP {max(info['sample_rule_ap'].values()):.3f} on {info['validation_volumes']} volumes)"
    if "sample_combine" in info:
        extra += f"; with the sample-level members: {info['sample_combine']} (AP {max(info['sample_combine_ap'].values()):.3f})"
    typer.echo(
        f"calibrated {detector} on {info['samples']} voxels of {info['normal_volumes']} normal volumes"
        f" (raw normal max {info['raw_normal_max']:.4g}){extra} in {info['seconds']:.1f} s"
    )
