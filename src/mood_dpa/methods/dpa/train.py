"""``train_dpa(cfg)``: one DPA autoencoder (one axis) through the shared runner -> ``RUN_DIR/model.pt``."""

from __future__ import annotations

from pathlib import Path

from ...errors import MoodError
from ...training.data import SliceDataModule
from ...training.runner import EarlyStop, Export, run_training
from .config import DPATrainConfig
from .lightning import DPAModule
from .model import save_dpa_model

MODEL_FILE = "model.pt"


def train_dpa(cfg: DPATrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train one DPA autoencoder; returns the path of the model file (``RUN_DIR/model.pt``).

    ``resume=True`` continues ``RUN_DIR/checkpoints/last.ckpt``. Under DDP every rank calls this;
    rank 0 writes the model file. ``callbacks`` are extra Lightning callbacks (tests use them to
    interrupt a run).
    """
    run_dir = Path(cfg.run_dir)
    o = cfg.optim

    def make_data():
        data = SliceDataModule(cfg.data, cfg.model.size, o.batch_size, seed=cfg.trainer.seed)
        axes = {s.axis for s in data.stores}
        if len(axes) != 1:
            raise MoodError(f"DPA training needs slice stores of one axis, got axes {sorted(axes)}")
        if len({s.rule for s in data.stores}) != 1:
            raise MoodError("DPA training needs slice stores made with one empty-slice rule")
        return data

    def make_module(data):
        module = DPAModule(cfg.model_dump(mode="json"))
        module.image_dir = run_dir / "images"
        return module

    def export(best, state, score, data) -> Export:
        meta = {
            "name": cfg.name,
            "axis": data.stores[0].axis,
            "rule": data.stores[0].rule.to_dict(),
            "normaliser": cfg.loss.normaliser,
            "backbone": cfg.loss.backbone,
            "vgg_sha256": best.vgg_sha256,
            "vgg_file": cfg.loss.vgg,
            "step": int(state.get("global_step", 0)),
            "best_val_loss": score,
            "train_config": cfg.model_dump(mode="json"),
        }
        return Export(save_dpa_model(run_dir / MODEL_FILE, best.autoencoder, best.loss_fn, meta))

    return run_training(
        cfg, make_data, make_module, export, out_name=MODEL_FILE, batch_size=o.batch_size, max_steps=o.max_steps,
        val_every=min(o.val_every, o.max_steps), early_stop=EarlyStop(o.min_delta, o.patience), resume=resume,
        callbacks=callbacks, rate_key="slices_per_s",
    )
