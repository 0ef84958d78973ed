"""``train_segmenter``: the segmenter through the shared training runner (resume, DDP, bf16 on GPU,
early stopping on the held-out synthetic validation, best checkpoint -> model file, summary.json).

Run folder: config.yaml, checkpoints/{last,best}.ckpt, logs/{csv,tensorboard}, model.pt, summary.json.

Until ``mood-dpa train`` dispatches on ``method: segmenter``, this module is runnable on its own:
``python -m mood_dpa.methods.segmenter.train CONFIG [--set k=v] [--resume] [--devices N] [--accelerator A]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...atomic import write_text
from ...errors import MoodError
from ...training.runner import _best_or_last, _fit, _make_trainer, _prepare_run_dir, _progress_on, _quiet_lightning
from .config import SegmenterTrainConfig

MODEL_FILE = "model.pt"


def _data_2d(cfg: SegmenterTrainConfig):
    from ...training.data import SliceDataModule

    data = SliceDataModule(cfg.data, cfg.model.size, cfg.optim.batch_size, seed=cfg.trainer.seed)
    rules = {s.rule for s in data.stores}
    if len(rules) != 1:
        raise MoodError("segmenter training needs slice stores made with one empty-slice rule")
    axes = sorted({int(s.axis) for s in data.stores})
    info = {"axis": axes[0] if len(axes) == 1 else None, "axes": axes, "size": cfg.model.size,
            "rule": rules.pop().to_dict(), "patch": None}
    return data, info


def _data_3d(cfg: SegmenterTrainConfig, world: int):
    from .data import PatchDataModule

    o = cfg.optim
    data = PatchDataModule(cfg.data, cfg.model.patch, o.batch_size, length=o.max_steps * o.batch_size * max(1, world),
                           seed=cfg.trainer.seed)
    info = {"axis": None, "axes": None, "size": None, "rule": None, "patch": list(cfg.model.patch)}
    return data, info


def train_segmenter(cfg: SegmenterTrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train one segmenter; returns ``RUN_DIR/model.pt`` (written by rank 0 from the best checkpoint)."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    from .lightning import SegmenterModule
    from .model import save_segmenter_model

    _quiet_lightning()
    run_dir = Path(cfg.run_dir)
    ckpt = _prepare_run_dir(run_dir, resume, cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    o = cfg.optim
    stop = EarlyStopping(monitor="val_loss", mode="min", min_delta=o.min_delta, patience=o.patience, check_finite=True)
    trainer = _make_trainer(cfg.trainer, run_dir, o.max_steps, -1, min(o.val_every, o.max_steps),
                            [stop, *(callbacks or [])], _progress_on())
    data, info = _data_2d(cfg) if cfg.dim == 2 else _data_3d(cfg, trainer.world_size)
    module = SegmenterModule(cfg.model_dump(mode="json"))
    steps, seconds = _fit(trainer, module, data, ckpt)
    out = run_dir / MODEL_FILE
    if not trainer.is_global_zero:
        return out
    best_path = _best_or_last(run_dir, trainer)
    state = torch.load(best_path, map_location="cpu", weights_only=False)
    best = SegmenterModule(cfg.model_dump(mode="json"))
    best.load_state_dict(state["state_dict"])
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    meta = {
        "name": cfg.name,
        "dim": cfg.dim,
        **info,
        "arch": {"net": "monai.BasicUNet", "features": list(cfg.model.features), "dropout": cfg.model.dropout},
        "target": "blend factor (sigmoid of the logit)",
        "step": int(state.get("global_step", 0)),
        "best_val_loss": float(score) if score is not None else None,
        "train_config": cfg.model_dump(mode="json"),
    }
    save_segmenter_model(out, best.net, meta)
    items = "slices" if cfg.dim == 2 else "patches"
    summary = {
        "name": cfg.name,
        "method": "segmenter",
        "dim": cfg.dim,
        "model": str(out),
        "best_checkpoint": str(best_path),
        "best_step": meta["step"],
        "best_val_loss": meta["best_val_loss"],
        "steps": int(trainer.global_step),
        "world_size": int(trainer.world_size),
        "stopped_early": bool(trainer.global_step < o.max_steps),
        "seconds": round(seconds, 2),
        f"{items}_per_s": round(steps * o.batch_size * trainer.world_size / max(seconds, 1e-9), 2),
    }
    write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (the same options as ``mood-dpa train``); exit 2 with one line on bad input."""
    import argparse

    from ...config import load_config

    p = argparse.ArgumentParser(prog="python -m mood_dpa.methods.segmenter.train",
                                description="Train the synthetic-anomaly segmenter (method: segmenter) from a YAML config.")
    p.add_argument("config", help="segmenter config YAML (e.g. configs/segmenter/demo_2d.yaml)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoints/last.ckpt")
    p.add_argument("--devices", type=int, default=None, help="devices per node; > 1 trains with DDP")
    p.add_argument("--accelerator", default=None, help="auto, cpu, gpu, mps")
    a = p.parse_args(argv)
    over = list(a.set)
    if a.devices is not None:
        over.append(f"trainer.devices={a.devices}")
    if a.accelerator is not None:
        over.append(f"trainer.accelerator={a.accelerator}")
    try:
        cfg = load_config(SegmenterTrainConfig, a.config, over)
        out = train_segmenter(cfg, resume=a.resume)
    except MoodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = Path(cfg.run_dir) / "summary.json"
    if out.is_file() and summary.is_file():
        s = json.loads(summary.read_text())
        print(f"train: {s['steps']} steps, best val loss {s['best_val_loss']:.4f} at step {s['best_step']}, model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
