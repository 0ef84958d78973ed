"""The ONE training runner every method uses: :func:`run_training` (and SimCLR's :func:`pretrain_simclr`).

A method supplies its data module, its Lightning module and an export (best checkpoint -> its model
file); the runner does the rest, the same way for every method: run-folder checks and ``--resume``,
seeding, the Lightning trainer (DDP when several devices, bf16 autocast on a GPU), early stopping on
the validation loss, the best checkpoint, and ``summary.json``. See
:func:`mood_dpa.methods.dpa.train.train_dpa` for a method built on it.

A run folder holds::

    config.yaml            the resolved config
    checkpoints/last.ckpt  saved every trainer.checkpoint_every steps and at each validation (--resume)
    checkpoints/best.ckpt  DPA: the last validation that improved by more than min_delta (the seed's rule,
                           :class:`SeedEarlyStop`); SimCLR: the lowest validation loss
    logs/csv/..., logs/tensorboard/...
    images/step_XXXXXXX.png (DPA: inputs over reconstructions at each validation)
    model.pt               (a method) the model file of the best checkpoint   | written atomically
    vgg19_simclr.pt        (SimCLR) the best conv weights, features.N.*  | at the end
    summary.json           what happened (steps, best val loss, throughput)
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import write_text
from ..config import dump_config
from ..data.slices import SliceStore
from ..errors import MoodError
from ..models.backbones.vgg19 import save_vgg_features
from ..outputs import mark_output_dir
from ..progress import enabled
from ..ranks import global_rank
from ..runtime import adapt_threads, interruption
from .config import SimCLRConfig, TrainerConfig
from .data import SliceDataModule
from .simclr import SimCLRModule

MODEL_FILE = "model.pt"
VGG_FILE = "vgg19_simclr.pt"


def _prepare_run_dir(run_dir: Path, resume: bool, cfg: Any) -> Path | None:
    """Check the run folder; return the checkpoint to resume from (or None)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise MoodError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
        return last
    if global_rank() == 0:
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            raise MoodError(f"{run_dir} already holds a training run; pass --resume to continue it, or choose another run_dir")

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
    if name in ("auto",):
        if torch.cuda.is_available():
            return "gpu"
        return "cpu"
    return "gpu" if name == "cuda" else name


class SeedEarlyStop:
    """The seed's early stopping and best checkpoint, as a plain state machine (no Lightning in it).

    A validation improves when its loss is below the best kept loss by more than ``min_delta``; it
    then becomes the best (``best_step``, and its checkpoint is the model). Training stops at the
    first validation where ``(step - best_step) / val_every > patience``: with validations every
    ``val_every`` steps that is the (patience + 1)-th validation without improvement. Lightning's
    ``EarlyStopping`` stops one validation sooner (``wait_count >= patience``), and ``ModelCheckpoint``
    keeps the lowest loss even when it improved by less than ``min_delta``; both drifted from the
    seed. A non-finite validation loss stops at once (and is never the best).
    """

    def __init__(self, min_delta: float, patience: int, val_every: int):
        self.min_delta, self.patience, self.val_every = float(min_delta), int(patience), int(val_every)
        self.best_loss = float("inf")
        self.best_step: int | None = None

    def update(self, step: int, loss: float) -> tuple[bool, bool]:
        """Record the validation at ``step``; returns (it is the new best, stop now)."""
        if not math.isfinite(loss):
            return False, True
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step = float(loss), int(step)
            return True, False
        since = int(step) - (self.best_step if self.best_step is not None else 0)
        return False, since / self.val_every > self.patience

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss = float(state.get("best_loss", float("inf")))
        self.best_step = state.get("best_step")


def _seed_stopping_callback(rule: SeedEarlyStop, best_path: Path, monitor: str = "val_loss") -> Any:
    """A Lightning callback that applies ``rule`` after each validation and writes ``best_path``."""
    # heavy: lightning only when training
    from lightning.pytorch.callbacks import Callback

    class SeedEarlyStopping(Callback):
        def __init__(self) -> None:
            self.rule = rule
            self.best_model_path = ""

        @property
        def best_model_score(self) -> float | None:
            return self.rule.best_loss if self.rule.best_step is not None else None

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking or monitor not in trainer.callback_metrics:
                return
            loss = float(trainer.callback_metrics[monitor])
            improved, stop = self.rule.update(trainer.global_step, loss)
            if improved:
                trainer.save_checkpoint(best_path)
                self.best_model_path = str(best_path)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            trainer.should_stop = trainer.should_stop or stop

        def state_dict(self) -> dict:
            return {**self.rule.state_dict(), "best_model_path": self.best_model_path}

        def load_state_dict(self, state_dict: dict) -> None:
            self.rule.load_state_dict(state_dict)
            self.best_model_path = state_dict.get("best_model_path", "")

    return SeedEarlyStopping()


def _make_trainer(t: TrainerConfig, run_dir: Path, max_steps: int, max_epochs: int, val_every: int | None,
                  callbacks: list, enable_progress: bool, best_checkpoint: bool = True) -> Any:
    """``best_checkpoint=False``: no lowest-loss ModelCheckpoint (a callback in ``callbacks`` writes best.ckpt)."""
    import lightning as L  # heavy: lightning only when training
    from lightning.pytorch.callbacks import ModelCheckpoint  # heavy: lightning
    from lightning.pytorch.loggers import (  # heavy: lightning
        CSVLogger,
        TensorBoardLogger,
    )

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
    if t.threads is None and accelerator == "cpu":  # no thread count given: keep to the cores nobody else uses
        callbacks = [*callbacks, _thread_governor()]
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=_precision(t, accelerator),
        max_steps=max_steps,
        max_epochs=max_epochs,
        callbacks=[*([best] if best_checkpoint else []), last, *callbacks],
        logger=[CSVLogger(run_dir / "logs", name="csv"), TensorBoardLogger(run_dir / "logs", name="tensorboard")],
        log_every_n_steps=t.log_every,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=enable_progress,
        default_root_dir=run_dir,
        **kwargs,
    )


def _thread_governor() -> Any:
    """A callback that lets :func:`mood_dpa.runtime.adapt_threads` adjust the CPU threads between steps."""
    from lightning.pytorch.callbacks import Callback  # heavy: lightning only when training

    class ThreadGovernorCallback(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            adapt_threads()

    return ThreadGovernorCallback()


def _quiet_lightning() -> None:
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
    return enabled()


def _fit(trainer: Any, module: Any, data: Any, ckpt: Path | None) -> tuple[int, float]:
    """Run ``trainer.fit`` (resuming from ``ckpt``); returns the steps done in this call and its seconds."""
    start_step = 0
    if ckpt is not None:
        start_step = int(torch.load(ckpt, map_location="cpu", weights_only=False).get("global_step", 0))
    t0 = time.perf_counter()
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    except SystemExit:
        # Lightning turns Ctrl-C / SIGTERM into sys.exit(1) after its own clean-up; end like any command does
        # on an interrupt (exit 130 with a message; the checkpoints stay for the rerun)
        if trainer.interrupted:
            raise interruption() from None
        raise
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)  # Lightning sets Ctrl-C to be ignored while it shuts down
    return int(trainer.global_step) - start_step, time.perf_counter() - t0


@dataclass
class EarlyStop:
    """Early stopping on ``val_loss``: stop after ``patience`` validations without a gain above ``min_delta``."""

    min_delta: float
    patience: int


@dataclass
class Export:
    """What a method's export returns: its model file and the summary entries it adds."""

    path: Path
    summary: dict = field(default_factory=dict)


def run_training(
    cfg: Any,
    make_data: Callable[[], Any],
    make_module: Callable[[Any], Any],
    export: Callable[[Any, dict, float | None, Any], Export],
    *,
    out_name: str,
    batch_size: int,
    max_steps: int,
    max_epochs: int = -1,
    val_every: int | None = None,
    early_stop: EarlyStop | None = None,
    resume: bool = False,
    callbacks: list | None = None,
    rate_key: str = "items_per_s",
    on_module: Callable[[Any], None] | None = None,
    fallback_to_final: bool = False,
) -> Path:
    """Train one model the shared way and return the path of what ``export`` wrote (``RUN_DIR/out_name``).

    ``cfg`` needs ``run_dir``, ``name`` and ``trainer`` (:class:`TrainerConfig`). ``make_data()`` builds
    the data module (after seeding), ``make_module(data)`` a fresh Lightning module (called again to
    hold the best checkpoint's weights), ``export(best_module, checkpoint_state, best_score, data)``
    writes the model file. ``resume=True`` continues ``RUN_DIR/checkpoints/last.ckpt`` (step, weights,
    optimiser, early-stopping and best-checkpoint state). Under DDP every rank calls this; rank 0
    exports. ``fallback_to_final``: with no checkpoint at all (a very short run) export the final weights.
    """
    import lightning as L  # heavy: lightning only when training

    _quiet_lightning()
    run_dir = Path(cfg.run_dir)
    ckpt = _prepare_run_dir(run_dir, resume, cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    data = make_data()
    module = make_module(data)
    if on_module is not None:
        on_module(module)
    extra = list(callbacks or [])
    stop = None
    if early_stop is not None:
        # the seed's rule (SeedEarlyStop): it also writes best.ckpt, so no lowest-loss ModelCheckpoint
        stop = _seed_stopping_callback(SeedEarlyStop(early_stop.min_delta, early_stop.patience, val_every or 1),
                                       run_dir / "checkpoints" / "best.ckpt")
        extra.insert(0, stop)
    trainer = _make_trainer(cfg.trainer, run_dir, max_steps, max_epochs, val_every, extra, _progress_on(),
                            best_checkpoint=stop is None)
    steps, seconds = _fit(trainer, module, data, ckpt)
    if not trainer.is_global_zero:
        return run_dir / out_name
    try:
        if stop is not None and Path(stop.best_model_path or "").is_file():
            best_path: Path | None = Path(stop.best_model_path)
        else:
            best_path = _best_or_last(run_dir, trainer)
        state = torch.load(best_path, map_location="cpu", weights_only=False)
        best = make_module(data)
        best.load_state_dict(state["state_dict"])
    except MoodError:
        if not fallback_to_final:
            raise
        best_path, best = None, module.cpu()
        state = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
    if stop is not None:
        score = stop.best_model_score
    else:
        score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    score = float(score) if score is not None else None
    done = export(best, state, score, data)
    summary = {
        "name": cfg.name,
        "method": getattr(cfg, "method", None),
        "model": str(done.path),
        "best_checkpoint": str(best_path) if best_path is not None else None,
        "best_step": int(state.get("global_step", 0)),
        "best_val_loss": score,
        "steps": int(trainer.global_step),
        "world_size": int(trainer.world_size),
        "stopped_early": bool(max_steps > 0 and trainer.global_step < max_steps),
        "seconds": round(seconds, 2),
        rate_key: round(steps * batch_size * trainer.world_size / max(seconds, 1e-9), 2),
        **done.summary,
    }
    write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return done.path


def pretrain_simclr(cfg: SimCLRConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """SimCLR pre-training; returns the exported VGG file (``RUN_DIR/vgg19_simclr.pt``) of the best epoch.

    SimCLR is not a detector method: it pre-trains the perceptual backbone the DPA's loss uses.
    """
    run_dir = Path(cfg.run_dir)
    o = cfg.optim
    holder: dict[str, Any] = {}

    def make_data():
        holder["data"] = SliceDataModule(cfg.data, _common_size(cfg), o.batch_size, seed=cfg.trainer.seed)
        return holder["data"]

    def export(best, state, score, data) -> Export:
        meta = {"name": cfg.name, "epoch": int(state.get("epoch", 0)), "step": int(state.get("global_step", 0)),
                "best_val_loss": score}
        out = save_vgg_features(run_dir / VGG_FILE, best.net.vgg, meta)
        return Export(out, {"epoch": meta["epoch"], "step": meta["step"], "vgg_file": str(out)})

    # validation once per epoch; a run capped by max_steps below one epoch validates once, at its end
    def val_every() -> int | None:
        steps_per_epoch = max(1, len(holder["data"].train_set) // o.batch_size)
        return o.max_steps if o.max_steps is not None and o.max_steps < steps_per_epoch else None

    # the data module is needed to know the validation interval: build it first (seeded as the runner does)
    import lightning as L

    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    every = val_every() if make_data() is not None else None
    return run_training(
        cfg, lambda: holder["data"], lambda data: SimCLRModule(cfg.model_dump(mode="json")), export,
        out_name=VGG_FILE, batch_size=o.batch_size, max_steps=o.max_steps or -1, max_epochs=o.epochs,
        val_every=every, resume=resume, callbacks=callbacks, rate_key="images_per_s", fallback_to_final=True,
    )


def _common_size(cfg: SimCLRConfig) -> int | None:
    """None when all stores share one slice size (no resize); else the largest, which the others are resized to."""
    sizes = {SliceStore(p).size for p in cfg.data.stores}
    return None if len(sizes) == 1 else max(sizes)
