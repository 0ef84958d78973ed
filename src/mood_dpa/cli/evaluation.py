"""Commands: synth, evaluate, baseline fit / fit-volume, predict (heavy imports stay inside the functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MoodError
from .app import app
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_OPTION, THREADS_OPTION, check_number, range_check, set_threads

baseline_app = typer.Typer(help="Non-learned reference detectors: the voxel intensity histogram (fit) and the sample-level volume histogram (fit-volume).", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@app.command()
def synth(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of healthy volumes (*.nii.gz)."),
    out: Path = typer.Option(..., "-o", "--output", help="Output folder (MOOD toy layout); replaced atomically."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV (filename,test_fold): use only the volumes of --fold."),
    fold: int = typer.Option(0, "--fold", help="Which fold to take from --folds."),
    kinds: str = typer.Option("local", "--kinds", help="Comma-separated kinds or groups. local (default): ellipsoid,uniform,noise,sink,source,shift,reflect,patch; global (the whole volume changed): gamma,noise_level,blur,bias_field,ghosting,modality,rescale,translate; all: both."),
    per_volume: str = typer.Option("1-3", "--per-volume", help="Anomaly regions per anomalous case: a count (2) or a range (1-3)."),
    cases_per_volume: Optional[int] = typer.Option(None, "--cases-per-volume", help="Anomalous cases per volume, kinds drawn at random (default: one per kind)."),
    shape: Optional[str] = typer.Option(None, "--shape", help="Force the region shape: sphere, ellipsoid or smooth (default: random)."),
    edge: str = typer.Option("mixed", "--edge", help="Region edges: soft, hard or mixed (drawn per region)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same bytes."),
    overwrite: bool = OVERWRITE_OPTION,
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Make a validation set with synthetic anomalies: OUT/toy, OUT/toy_label/{pixel,sample}, OUT/manifest.csv."""
    from ..data.folds import paths_of_split
    from ..data.synth import make_synthetic_set
    from ..outputs import prepare_output_dir
    from ..volumes import check_volume_ids, list_volumes

    edges = {"soft": True, "hard": False, "mixed": None}
    if edge not in edges:
        raise MoodError(f"--edge {edge!r}: expected soft, hard or mixed")
    if cases_per_volume is not None and cases_per_volume < 1:
        raise MoodError(f"--cases-per-volume must be at least 1, got {cases_per_volume}")
    prepare_output_dir(out, inputs=[inputs, folds], overwrite=overwrite, replace=True)
    set_threads(threads)
    range_check(no_range_check)
    paths = list_volumes(inputs)
    check_volume_ids(paths)
    if folds is not None:
        paths = paths_of_split(paths, folds, fold, "val")
        if not paths:
            raise MoodError(f"{folds}: no volume of {inputs} is in fold {fold}")
    rows = make_synthetic_set(paths, out, kinds, per_volume, seed, cases_per_volume=cases_per_volume, shape=shape, soft=edges[edge])
    anomalous = sum(1 for r in rows if r["label"])
    typer.echo(f"wrote {len(rows)} cases ({anomalous} anomalous, {len(rows) - anomalous} normal) from {len(paths)} volumes to {out}")


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predictions (same file names as the labels)."),
    labels: Path = typer.Option(..., "--labels", help="Label folder: toy_label/<task>, toy_label, or the synth output folder."),
    task: str = typer.Option(..., "--task", help="pixel or sample."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="manifest.csv of `synth`: adds AP per anomaly kind."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Case resamples for a mean and 95 % interval of AP (0 = off)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON to this file."),
    threads: int = THREADS_OPTION,
) -> None:
    """Score predictions exactly as the MOOD challenge does (pooled voxel AP, or AP over cases)."""
    from ..evaluation.evaluate import evaluate_folder, result_table, write_json
    from ..outputs import prepare_output_file
    from ..progress import console

    if bootstrap < 0:
        raise MoodError(f"--bootstrap must be 0 (off) or a positive count, got {bootstrap}")
    if json_path is not None:
        prepare_output_file(json_path, inputs=[pred, labels, manifest])
    set_threads(threads)

    result = evaluate_folder(pred, labels, task, manifest=manifest, bootstrap=bootstrap, seed=seed)
    console.print(result_table(result))
    if json_path is not None:
        write_json(result, json_path)
    ap = "undefined" if result.ap != result.ap else f"{result.ap:.4f}"
    extra = f", {len(result.missing)} missing/unusable predictions" if result.missing else ""
    typer.echo(f"{task} AP {ap} over {result.cases} cases ({result.positives} positive {'voxels' if task == 'pixel' else 'cases'}){extra}")
    if result.tuning_warning:  # repeated last, where it cannot scroll away above the table
        typer.echo(f"WARNING: {result.tuning_warning}", err=True)


@baseline_app.command("fit")
def baseline_fit(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of healthy training volumes."),
    out: Path = typer.Option(..., "-o", "--output", help="Model file to write (.npz)."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV: train on the volumes NOT in --fold."),
    fold: int = typer.Option(0, "--fold", help="Validation fold left out when --folds is given."),
    bins: int = typer.Option(256, "--bins", help="Intensity histogram bins over [0,1]."),
    sigma: float = typer.Option(1.0, "--sigma", help="Spatial smoothing of the voxel scores (voxels)."),
    seed: int = typer.Option(0, "--seed", help="Seed (choice of the calibration volumes and voxels)."),
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Fit the intensity-histogram baseline on healthy volumes, and the shared shell's calibration on them."""
    from ..data.folds import paths_of_split
    from ..methods.histogram.model import fit_histogram
    from ..outputs import prepare_output_file
    from ..volumes import check_volume_ids, list_volumes

    if not str(out).endswith(".npz"):
        raise MoodError(f"{out}: the baseline model file must end in .npz")
    if bins < 2:
        raise MoodError(f"--bins must be at least 2, got {bins}")
    check_number("--sigma", sigma, low=0.0)
    prepare_output_file(out, inputs=[inputs, folds])
    set_threads(threads)
    range_check(no_range_check)
    paths = list_volumes(inputs)
    check_volume_ids(paths)
    if folds is not None:
        paths = paths_of_split(paths, folds, fold, "train")
        if not paths:
            raise MoodError(f"{folds}: every volume of {inputs} is in fold {fold}; nothing to train on")
    fit_histogram(paths, out, bins=bins, sigma=sigma, seed=seed)
    typer.echo(f"fitted the histogram baseline on {len(paths)} volumes; wrote {out}")


@baseline_app.command("fit-volume")
def baseline_fit_volume(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of healthy training volumes."),
    out: Path = typer.Option(..., "-o", "--output", help="Model file to write (.npz, detector volume-histogram)."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV: fit on the volumes NOT in --fold."),
    fold: int = typer.Option(0, "--fold", help="Validation fold left out when --folds is given."),
    bins: int = typer.Option(128, "--bins", help="Foreground intensity histogram bins over [0,1] (at least 8)."),
    k: int = typer.Option(5, "--k", help="Nearest training volumes averaged (at most the number of volumes - 1)."),
    fraction_weight: float = typer.Option(1.0, "--fraction-weight", help="Weight of the foreground-fraction part (0 = left out)."),
    noise_weight: float = typer.Option(1.0, "--noise-weight", help="Weight of the noise-floor part (0 = left out)."),
    combination: str = typer.Option("max", "--combination", help="How the parts combine: max (each over its normal maximum) or sum."),
    seed: int = typer.Option(0, "--seed", help="Recorded in the file (the fit itself is deterministic)."),
) -> None:
    """Fit the SAMPLE-LEVEL volume-histogram detector on healthy volumes (how far a volume's intensity profile is from its nearest training volumes).

    It gives one score per volume and no voxel map: predict with it alone (--task sample), or add it to a detector with `mood-dpa ensemble ... volhist.npz`, where `calibrate --val` chooses how its score joins the map-based sample score."""
    from ..data.folds import paths_of_split
    from ..methods.volume_histogram import COMBINATIONS, VolumeHistogramDetector
    from ..volumes import list_volumes

    if not str(out).endswith(".npz"):
        raise MoodError(f"{out}: the volume-histogram model file must end in .npz")
    if combination not in COMBINATIONS:
        raise MoodError(f"--combination {combination!r}: expected {' or '.join(COMBINATIONS)}")
    paths = list_volumes(inputs)
    if folds is not None:
        paths = paths_of_split(paths, folds, fold, "train")
        if not paths:
            raise MoodError(f"{folds}: every volume of {inputs} is in fold {fold}; nothing to fit on")
    det = VolumeHistogramDetector.fit(paths, bins=bins, k=k, fraction_weight=fraction_weight, noise_weight=noise_weight,
                                      combination=combination, seed=seed)
    det.save(out)
    typer.echo(f"fitted the volume-histogram detector on {len(paths)} volumes (k={det.k}, {combination}); wrote {out}")


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", help="Model file: a detector .yaml (any methods) or a baseline .npz."),
    task: str = typer.Option(..., "--task", help="pixel (a score volume per input), sample (one score per input) or both (one pass, both files)."),
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of volumes to score (*.nii.gz)."),
    out: Path = typer.Option(..., "-o", "--output", help="Output folder (MOOD layout)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: automatic; ignored by the baseline)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per forward pass of slice models (ignored by volume models such as the baseline)."),
    overwrite: bool = OVERWRITE_OPTION,
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
    record: bool = typer.Option(True, "--record/--no-record", help="Write OUT/.mood-dpa-predict.json (which model, tuned on what; `evaluate` warns on the tuning set). The challenge container writes none."),
) -> None:
    """Score every volume of a folder and write MOOD-format predictions; exit 2 if any input failed."""
    from ..inference.detectors import load_detector
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
    summary = predict_folder(detector, inputs, out, task, record=record)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(code=2)
