"""Commands that score volumes with a detector: ``predict`` (the one MOOD writer) and ``submission`` (the challenge container).

Library modules are imported inside the commands (start-up time: ``mood-dpa --help`` must not load torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MoodError
from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_OPTION, THREADS_OPTION, device_option, range_check, set_threads


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", help="Model file: a detector .yaml (any methods) or a baseline .npz."),
    task: str = typer.Option(..., "--task", help="pixel (a score volume per input), sample (one score per input) or both (one pass, both files)."),
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of volumes to score (*.nii.gz)."),
    out: Path = typer.Option(..., "-o", "--output", help="Output folder (MOOD layout)."),
    device: Optional[str] = device_option("auto (default: a GPU when present), cpu, gpu, cuda or cuda:N (the histogram baseline computes on the CPU)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per forward pass of slice models (ignored by volume models such as the baseline)."),
    overwrite: bool = OVERWRITE_OPTION,
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
    replace: bool = typer.Option(False, "--replace", help="OUT holds another detector's predictions of this task: remove them first (the record lists them; nothing else is touched)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Write OUT/.mood-dpa-predict.json (which model, tuned on what; `evaluate` warns on the tuning set). The challenge container writes none."),
) -> None:
    """Score every volume of a folder and write MOOD-format predictions; exit 2 if any input failed."""
    from ..inference.loading import load_detector
    from ..inference.predict import predict_folder
    from ..outputs import prepare_output_dir
    from ..volumes import list_volumes

    if task not in ("pixel", "sample", "both"):
        raise MoodError(f"--task {task!r}: expected pixel, sample or both")
    if batch_size is not None and batch_size < 1:
        raise MoodError(f"--batch-size must be at least 1, got {batch_size}")
    list_volumes(inputs)  # a missing or empty input folder is reported before anything else
    prepare_output_dir(out, inputs=[inputs, model], overwrite=overwrite)
    set_threads(threads)
    range_check(no_range_check)
    detector = load_detector(model, device=device, batch_size=batch_size)
    summary = predict_folder(detector, inputs, out, task, record=record, replace=replace)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(code=2)


@app.command("submission")
def submission_cmd(
    out: Path = typer.Option(..., "-o", "--output", help="Build-context folder to write (replaced whole on success)."),
    brain_pixel: Path = typer.Option(..., "--brain-pixel", help="Model for brain / pixel: detector .yaml or baseline .npz."),
    brain_sample: Path = typer.Option(..., "--brain-sample", help="Model for brain / sample."),
    abdom_pixel: Path = typer.Option(..., "--abdom-pixel", help="Model for abdomen / pixel."),
    abdom_sample: Path = typer.Option(..., "--abdom-sample", help="Model for abdomen / sample."),
    source: Optional[Path] = typer.Option(None, "--source", help="mood-dpa project folder to install in the image (default: this checkout)."),
    allow_uncalibrated: bool = typer.Option(False, "--allow-uncalibrated", help="Accept detector files without a fitted calibration."),
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
