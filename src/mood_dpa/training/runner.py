"""Entry points: :func:`train_dpa` and :func:`pretrain_simclr` (what the CLI and the demo call).

A run folder holds::

    config.yaml            the resolved config
    checkpoints/last.ckpt  saved every trainer.checkpoint_every steps and at each validation (--resume)
    checkpoints/best.ckpt  lowest validation loss so far
    logs/csv/..., logs/tensorboard/...
    images/step_XXXXXXX.png (DPA: inputs over reconstructions at each validation)
    model.pt               (DPA) the model file of the best checkpoint   | written atomically
    vgg19_simclr.pt        (SimCLR) the best conv weights, features.N.*  | at the end
    summary.json           what happened (steps, best val loss, throughput)
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import dump_config
from ..errors import MoodError
from .config import DPATrainConfig, SimCLRConfig, TrainerConfig

MODEL_FILE = "model.pt"
VGG_FILE = "vgg19_simclr.pt"


def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _prepare_run_dir(run_dir: Path, resume: bool, cfg: Any) -> Path | None:
    """Check the run folder; return the checkpoint to resume from (or None)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise MoodError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
        return last
    if _global_rank() == 0:
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            raise MoodError(f"{run_dir} already holds a training run; pass --resume to continue it, or choose another run_dir")
        from ..outputs import mark_output_dir

        mark_output_dir(run_dir)  # creates it, with the marker of a mood-dpa output
        write_text(run_dir / "config.yaml", dump_config(cfg))
    return None


def _precision(t: TrainerConfig, accelerator: str) -> str:
    if t.precision == "32":
        return "32-true"
    if t.precision == "bf16":
        return "bf16-mixed"
    return "bf16-mixed" if accelerator == "gpu" else "32-true"


def _resolve_accelerator(name: str) -> str:
    import torch

    if name in ("auto",):
        if torch.cuda.is_available():
            return "gpu"
        return "cpu"
    return "gpu" if name == "cuda" else name


def _make_trainer(t: TrainerConfig, run_dir: Path, max_steps: int, max_epochs: int, val_every: int | None,
                  callbacks: list, enable_progress: bool) -> Any:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    torch.set_float32_matmul_precision(t.matmul_precision)
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    accelerator = _resolve_accelerator(t.accelerator)
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                           save_last=False, enable_version_counter=False, auto_insert_metric_name=False)
    last = ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=t.checkpoint_every,
                           enable_version_counter=False)
    devices = t.devices
    strategy = t.strategy
    if strategy == "auto" and (devices not in (1, "1") or t.num_nodes > 1):
        strategy = "ddp"
    kwargs: dict[str, Any] = {}
    if val_every is not None:
        kwargs.update(val_check_interval=val_every, check_val_every_n_epoch=None)
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=_precision(t, accelerator),
        max_steps=max_steps,
        max_epochs=max_epochs,
        callbacks=[best, last, *callbacks],
        logger=[CSVLogger(run_dir / "logs", name="csv"), TensorBoardLogger(run_dir / "logs", name="tensorboard")],
        log_every_n_steps=t.log_every,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=enable_progress,
        default_root_dir=run_dir,
        **kwargs,
    )


def _quiet_lightning() -> None:
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (".*does not have many workers.*", ".*The number of training batches.*", ".*Checkpoint directory.*exists.*",
                ".*resuming from a checkpoint that ended before the epoch ended.*", ".*sync_dist=True.*",
                ".*Experiment logs directory.*", ".*LeafSpec.*", ".*isinstance.*treespec.*", ".*module\\(s\\) in eval mode.*"):
        warnings.filterwarnings("ignore", message=msg)


def _best_or_last(run_dir: Path, trainer: Any) -> Path:
    best = Path(trainer.checkpoint_callback.best_model_path or "") if trainer.checkpoint_callback else Path()
    if best.is_file():
        return best
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise MoodError(f"{run_dir}: training ended without any checkpoint")


def _progress_on() -> bool:
    from ..progress import enabled

    return enabled()


def _fit(trainer: Any, module: Any, data: Any, ckpt: Path | None) -> tuple[int, float]:
    """Run ``trainer.fit`` (resuming from ``ckpt``); returns the steps done in this call and its seconds."""
    import torch

    start_step = 0
    if ckpt is not None:
        start_step = int(torch.load(ckpt, map_location="cpu", weights_only=False).get("global_step", 0))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    return int(trainer.global_step) - start_step, time.perf_counter() - t0


def train_dpa(cfg: DPATrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train one DPA autoencoder; returns the path of the model file (``RUN_DIR/model.pt``).

    ``resume=True`` continues ``RUN_DIR/checkpoints/last.ckpt`` (step, weights, optimiser, early-stopping
    and best-checkpoint state). Under DDP every rank calls this; rank 0 writes the model file.
    ``callbacks`` are extra Lightning callbacks (tests use them to interrupt a run).
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    from ..models.model_file import save_dpa_model
    from .data import SliceDataModule
    from .dpa import DPAModule

    _quiet_lightning()
    run_dir = Path(cfg.run_dir)
    ckpt = _prepare_run_dir(run_dir, resume, cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    data = SliceDataModule(cfg.data, cfg.model.size, cfg.optim.batch_size, seed=cfg.trainer.seed)
    rules = {s.rule for s in data.stores}
    axes = {s.axis for s in data.stores}
    if len(axes) != 1:
        raise MoodError(f"DPA training needs slice stores of one axis, got axes {sorted(axes)}")
    if len(rules) != 1:
        raise MoodError("DPA training needs slice stores made with one empty-slice rule")
    module = DPAModule(cfg.model_dump(mode="json"))
    module.image_dir = run_dir / "images"
    o = cfg.optim
    stop = EarlyStopping(monitor="val_loss", mode="min", min_delta=o.min_delta, patience=o.patience, check_finite=True)
    trainer = _make_trainer(cfg.trainer, run_dir, o.max_steps, -1, min(o.val_every, o.max_steps),
                            [stop, *(callbacks or [])], _progress_on())
    steps, seconds = _fit(trainer, module, data, ckpt)
    out = run_dir / MODEL_FILE
    if not trainer.is_global_zero:
        return out
    best_path = _best_or_last(run_dir, trainer)
    state = torch.load(best_path, map_location="cpu", weights_only=False)
    best_module = DPAModule(cfg.model_dump(mode="json"))
    best_module.load_state_dict(state["state_dict"])
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    meta = {
        "name": cfg.name,
        "axis": axes.pop(),
        "rule": rules.pop().to_dict(),
        "normaliser": cfg.loss.normaliser,
        "vgg_sha256": best_module.vgg_sha256,
        "vgg_file": cfg.loss.vgg,
        "step": int(state.get("global_step", 0)),
        "best_val_loss": float(score) if score is not None else None,
        "train_config": cfg.model_dump(mode="json"),
    }
    save_dpa_model(out, best_module.autoencoder, best_module.loss_fn, meta)
    summary = {
        "name": cfg.name,
        "model": str(out),
        "best_checkpoint": str(best_path),
        "best_step": meta["step"],
        "best_val_loss": meta["best_val_loss"],
        "steps": int(trainer.global_step),
        "world_size": int(trainer.world_size),
        "stopped_early": bool(trainer.global_step < o.max_steps),
        "seconds": round(seconds, 2),
        "slices_per_s": round(steps * o.batch_size * trainer.world_size / max(seconds, 1e-9), 2),
    }
    write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return out


def pretrain_simclr(cfg: SimCLRConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """SimCLR pre-training; returns the exported VGG file (``RUN_DIR/vgg19_simclr.pt``) of the best epoch."""
    import lightning as L
    import torch

    from ..models.vgg import save_vgg_features
    from .data import SliceDataModule
    from .simclr import SimCLRModule

    _quiet_lightning()
    run_dir = Path(cfg.run_dir)
    ckpt = _prepare_run_dir(run_dir, resume, cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    data = SliceDataModule(cfg.data, _common_size(cfg), cfg.optim.batch_size, seed=cfg.trainer.seed)
    module = SimCLRModule(cfg.model_dump(mode="json"))
    o = cfg.optim
    # validation once per epoch; a run capped by max_steps below one epoch validates once, at its end
    steps_per_epoch = max(1, len(data.train_set) // o.batch_size)
    val_every = o.max_steps if o.max_steps is not None and o.max_steps < steps_per_epoch else None
    trainer = _make_trainer(cfg.trainer, run_dir, o.max_steps or -1, o.epochs, val_every, list(callbacks or []),
                            _progress_on())
    steps, seconds = _fit(trainer, module, data, ckpt)
    out = run_dir / VGG_FILE
    if not trainer.is_global_zero:
        return out
    try:
        best_path = _best_or_last(run_dir, trainer)
        state = torch.load(best_path, map_location="cpu", weights_only=False)
        best = SimCLRModule(cfg.model_dump(mode="json"))
        best.load_state_dict(state["state_dict"])
    except MoodError:  # no checkpoint was written (a very short run): export the final weights
        best, state = module.cpu(), {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    meta = {"name": cfg.name, "epoch": int(state.get("epoch", 0)), "step": int(state.get("global_step", 0)),
            "best_val_loss": float(score) if score is not None else None}
    save_vgg_features(out, best.net.vgg, meta)
    summary = {**meta, "vgg_file": str(out), "steps": int(trainer.global_step), "seconds": round(seconds, 2),
               "images_per_s": round(steps * o.batch_size * trainer.world_size / max(seconds, 1e-9), 2)}
    write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return out


def _common_size(cfg: SimCLRConfig) -> int | None:
    """None when all stores share one slice size (no resize); else the largest, which the others are resized to."""
    from ..data.slices import SliceStore

    sizes = {SliceStore(p).size for p in cfg.data.stores}
    return None if len(sizes) == 1 else max(sizes)
