"""``train_segmenter``: the segmenter through the shared training runner (:func:`mood_dpa.training.runner.run_training`:
resume, DDP, bf16 on GPU, the seed's early stopping on the held-out synthetic validation, best checkpoint ->
model file, summary.json). ``mood-dpa train CONFIG`` calls it for configs with ``method: segmenter``.

Run folder: config.yaml, checkpoints/{last,best}.ckpt, logs/{csv,tensorboard}, model.pt, summary.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import MoodError
from ...training.data import SliceDataModule
from ...training.runner import EarlyStop, Export, run_training
from .config import SegmenterTrainConfig
from .data import PatchDataModule
from .lightning import SegmenterModule
from .model import save_segmenter_model

MODEL_FILE = "model.pt"


def _data_2d(cfg: SegmenterTrainConfig):
    data = SliceDataModule(cfg.data, cfg.model.size, cfg.optim.batch_size, seed=cfg.trainer.seed)
    rules = {s.rule for s in data.stores}
    if len(rules) != 1:
        raise MoodError("segmenter training needs slice stores made with one empty-slice rule")
    axes = sorted({int(s.axis) for s in data.stores})
    info = {"axis": axes[0] if len(axes) == 1 else None, "axes": axes, "size": cfg.model.size,
            "rule": rules.pop().to_dict(), "patch": None}
    return data, info


def _world(cfg: SegmenterTrainConfig) -> int:
    """Processes the run will have (devices x nodes; 'auto' counts the GPUs), known before the trainer exists."""
    devices = cfg.trainer.devices
    if devices in ("auto", "-1", -1):
        devices = torch.cuda.device_count() or 1
    return max(1, int(devices)) * cfg.trainer.num_nodes


def _data_3d(cfg: SegmenterTrainConfig):
    o = cfg.optim
    data = PatchDataModule(cfg.data, cfg.model.patch, o.batch_size, length=o.max_steps * o.batch_size * _world(cfg),
                           seed=cfg.trainer.seed)
    info = {"axis": None, "axes": None, "size": None, "rule": None, "patch": list(cfg.model.patch)}
    return data, info


def train_segmenter(cfg: SegmenterTrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train one segmenter; returns ``RUN_DIR/model.pt`` (written by rank 0 from the best checkpoint)."""
    run_dir = Path(cfg.run_dir)
    o = cfg.optim
    info: dict = {}

    def make_data():
        data, found = _data_2d(cfg) if cfg.dim == 2 else _data_3d(cfg)
        info.update(found)
        return data

    def make_module(data):
        return SegmenterModule(cfg.model_dump(mode="json"))

    def export(best, state, score, data) -> Export:
        meta = {
            "name": cfg.name,
            "dim": cfg.dim,
            **info,
            "arch": {"net": "monai.DynUNet" if cfg.model.net == "dynunet" else "monai.BasicUNet",
                     "features": list(cfg.model.features), "dropout": cfg.model.dropout,
                     "deep_supervision": cfg.model.deep_supervision},
            "target": "blend factor (sigmoid of the logit)",
            "step": int(state.get("global_step", 0)),
            "best_val_loss": score,
            "train_config": cfg.model_dump(mode="json"),
        }
        return Export(save_segmenter_model(run_dir / MODEL_FILE, best.net, meta), {"dim": cfg.dim})

    return run_training(
        cfg, make_data, make_module, export, out_name=MODEL_FILE, batch_size=o.batch_size, max_steps=o.max_steps,
        val_every=min(o.val_every, o.max_steps), early_stop=EarlyStop(o.min_delta, o.patience), resume=resume,
        callbacks=callbacks, rate_key="slices_per_s" if cfg.dim == 2 else "patches_per_s",
    )
