"""Commands that train or fit models: ``pretrain`` (SimCLR VGG19), ``train`` (any method, by the YAML's ``method:``),
``baseline fit`` / ``baseline fit-volume`` (the non-learned references).

Library modules are imported inside the commands (start-up time: ``mood-dpa --help`` must not load torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from ..errors import MoodError
from .checks import NO_RANGE_CHECK_OPTION, OVERWRITE_FILE_OPTION, OVERWRITE_OPTION, THREADS_OPTION, check_number, range_check, seed_option, set_threads

baseline_app = typer.Typer(help="Non-learned reference detectors: the voxel intensity histogram (fit) and the sample-level volume histogram (fit-volume).", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")

_SET = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                    help="Override a config field, e.g. --set optim.lr=2e-4 --set data.fold=1. Repeatable.")
_RESUME = typer.Option(False, "--resume", help="Continue the run in run_dir from checkpoints/last.ckpt (step, weights, optimiser).")
_DEVICES = typer.Option(None, "--devices", help="Devices per node; > 1 trains with DDP (also under torchrun / SLURM).")
_ACCEL = typer.Option(None, "--accelerator", help="auto (GPU when present), cpu, gpu, mps.")


def _overrides(sets: Optional[List[str]], devices: Optional[int], accelerator: Optional[str], threads: Optional[int] = None) -> list[str]:
    out = list(sets or [])
    threads = set_threads(threads)  # --threads, else OMP_NUM_THREADS / MKL_NUM_THREADS when set
    if threads is not None:
        out.append(f"trainer.threads={threads}")
    if devices is not None:
        out.append(f"trainer.devices={devices}")
    if accelerator is not None:
        out.append(f"trainer.accelerator={accelerator}")
    return out


def _check_run_dir(cfg, resume: bool, overwrite: bool) -> None:
    """The run folder: not a slice store or inside one, writable, made by mood-dpa (or --overwrite / --resume)."""
    from ..data.slices import SliceStore
    from ..outputs import check_writable, prepare_output_dir, remove_stale_temps

    run_dir = Path(cfg.run_dir)
    stores = list(getattr(cfg.data, "stores", []) or [])
    for store in stores:  # a missing store is reported before the run folder is made
        SliceStore(store)
    if resume:  # continuing a run: it is ours by definition (the runner checks for its checkpoint)
        check_writable(run_dir)
        remove_stale_temps(run_dir)
        return
    prepare_output_dir(run_dir, inputs=stores, overwrite=overwrite)


@app.command("pretrain")
def pretrain(
    config: Path = typer.Argument(..., help="SimCLR config YAML (see configs/simclr.yaml)."),
    set_: Optional[List[str]] = _SET,
    resume: bool = _RESUME,
    devices: Optional[int] = _DEVICES,
    accelerator: Optional[str] = _ACCEL,
    threads: Optional[int] = THREADS_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Pre-train the VGG19 of the perceptual loss with SimCLR on slice stores (any number, any axis).

    Writes RUN_DIR/vgg19_simclr.pt (the conv weights of the best validation epoch, by name), plus
    checkpoints, CSV/TensorBoard logs and summary.json.
    """
    from ..config import load_config
    from ..training.config import SimCLRConfig
    from ..training.runner import pretrain_simclr

    cfg = load_config(SimCLRConfig, config, _overrides(set_, devices, accelerator, threads))
    _check_run_dir(cfg, resume, overwrite)
    out = pretrain_simclr(cfg, resume=resume)
    if out.is_file():
        typer.echo(f"pretrain: VGG19 features written to {out}")


def _method_of(config: Path) -> str:
    """The YAML's top-level ``method:`` (default ``dpa``: configs written before methods existed have none)."""
    from ..config import read_yaml
    from ..methods.registry import DEFAULT_METHOD

    if not config.is_file():
        raise MoodError(f"{config}: no such config file")
    method = read_yaml(config).get("method", DEFAULT_METHOD)
    if not isinstance(method, str):
        raise MoodError(f"{config}: 'method' must be a method name such as dpa")
    return method


@app.command("train")
def train(
    config: Path = typer.Argument(..., help="Training config YAML (e.g. configs/brain/pixel/axis_0.yaml, configs/demo/dpa.yaml); its 'method:' picks the method (default dpa)."),
    set_: Optional[List[str]] = _SET,
    resume: bool = _RESUME,
    devices: Optional[int] = _DEVICES,
    accelerator: Optional[str] = _ACCEL,
    threads: Optional[int] = THREADS_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Train one model of the method the config names (default: one DPA autoencoder for one axis), with early stopping on the validation fold.

    Every method trains through the same runner: RUN_DIR/model.pt (the best checkpoint as a self-contained model file for 'mood-dpa ensemble'), checkpoints/ (--resume), logs/ (CSV, TensorBoard) and summary.json; the DPA also writes images/ (inputs over reconstructions).
    """
    import json

    from ..config import load_config
    from ..methods.registry import method_by_name

    entry = method_by_name(_method_of(config))
    if entry.train is None or entry.config is None:
        raise MoodError(f"{config}: method {entry.name!r} is not trained with 'mood-dpa train' (see its own command)")
    cfg = load_config(entry.config, config, _overrides(set_, devices, accelerator, threads))
    _check_run_dir(cfg, resume, overwrite)
    out = entry.train(cfg, resume=resume)
    summary = Path(cfg.run_dir) / "summary.json"
    if out is not None and Path(out).is_file() and summary.is_file():
        s = json.loads(summary.read_text())
        best = s.get("best_val_loss")
        best_txt = f"{best:.4f}" if isinstance(best, float) else "n/a"
        typer.echo(f"train ({entry.name}): {s['steps']} steps, best val loss {best_txt} at step {s['best_step']}, model written to {out}")


def _training_volumes(inputs: Path, folds: Optional[Path], fold: int) -> list:
    """The volumes of ``inputs`` (one id each), less the validation fold when ``--folds`` is given."""
    from ..data.folds import paths_of_split
    from ..volumes import check_volume_ids, list_volumes

    paths = list_volumes(inputs)
    check_volume_ids(paths)
    if folds is not None:
        paths = paths_of_split(paths, folds, fold, "train")
        if not paths:
            raise MoodError(f"{folds}: every volume of {inputs} is in fold {fold}; nothing to fit on")
    return paths


@baseline_app.command("fit")
def baseline_fit(
    inputs: Path = typer.Option(..., "-i", "--input", help="Folder of healthy training volumes."),
    out: Path = typer.Option(..., "-o", "--output", help="Model file to write (.npz)."),
    folds: Optional[Path] = typer.Option(None, "--folds", help="Folds CSV: train on the volumes NOT in --fold."),
    fold: int = typer.Option(0, "--fold", help="Validation fold left out when --folds is given."),
    bins: int = typer.Option(256, "--bins", help="Intensity histogram bins over [0,1]."),
    sigma: float = typer.Option(1.0, "--sigma", help="Spatial smoothing of the voxel scores (voxels)."),
    seed: int = seed_option("Seed (choice of the calibration volumes and voxels)."),
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
    overwrite: bool = OVERWRITE_FILE_OPTION,
) -> None:
    """Fit the intensity-histogram baseline on healthy volumes, and the shared shell's calibration on them."""
    from ..inference.tuning import calibrate_model_file
    from ..methods.histogram.model import fit_histogram
    from ..outputs import claim_output_file, prepare_output_file

    if not str(out).endswith(".npz"):
        raise MoodError(f"{out}: the baseline model file must end in .npz")
    if bins < 2:
        raise MoodError(f"--bins must be at least 2, got {bins}")
    check_number("--sigma", sigma, low=0.0)
    prepare_output_file(out, inputs=[inputs, folds], overwrite=overwrite)
    set_threads(threads)
    range_check(no_range_check)
    paths = _training_volumes(inputs, folds, fold)
    fit_histogram(paths, out, bins=bins, sigma=sigma)
    calibrate_model_file(out, paths, seed=seed)
    claim_output_file(out)
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
    seed: int = seed_option("Recorded in the file (the fit itself is deterministic)."),
    overwrite: bool = OVERWRITE_FILE_OPTION,
    threads: int = THREADS_OPTION,
    no_range_check: bool = NO_RANGE_CHECK_OPTION,
) -> None:
    """Fit the SAMPLE-LEVEL volume-histogram detector on healthy volumes (how far a volume's intensity profile is from its nearest training volumes).

    It gives one score per volume and no voxel map: predict with it alone (--task sample), or add it to a detector with `mood-dpa ensemble ... volhist.npz`, where `calibrate --val` chooses how its score joins the map-based sample score."""
    from ..methods.volume_histogram.model import COMBINATIONS, VolumeHistogramDetector
    from ..outputs import claim_output_file, prepare_output_file

    if not str(out).endswith(".npz"):
        raise MoodError(f"{out}: the volume-histogram model file must end in .npz")
    if combination not in COMBINATIONS:
        raise MoodError(f"--combination {combination!r}: expected {' or '.join(COMBINATIONS)}")
    prepare_output_file(out, inputs=[inputs, folds], overwrite=overwrite)
    set_threads(threads)
    range_check(no_range_check)
    paths = _training_volumes(inputs, folds, fold)
    det = VolumeHistogramDetector.fit(paths, bins=bins, k=k, fraction_weight=fraction_weight, noise_weight=noise_weight,
                                      combination=combination, seed=seed)
    det.save(out)
    claim_output_file(out)
    typer.echo(f"fitted the volume-histogram detector on {len(paths)} volumes (k={det.k}, {combination}); wrote {out}")
