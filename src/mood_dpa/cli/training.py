"""``mood-dpa pretrain CONFIG`` (SimCLR VGG19) and ``mood-dpa train CONFIG`` (any method, by the YAML's ``method:``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .checks import OVERWRITE_OPTION, THREADS_OPTION, set_threads

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
    from ..errors import MoodError
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

    from ..errors import MoodError
    from ..methods.registry import method_by_name

    from ..config import load_config

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
