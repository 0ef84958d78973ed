"""The segmenter's LightningModule: normal batch -> anomaly generator -> U-Net -> BCE (+ optional Dice), over
every deep-supervision head when the net has them (weights :func:`.model.supervision_weights`).

Training anomalies come from a ``torch.Generator`` on the training device, seeded from the trainer seed
and the rank (its state is saved in the checkpoint, so a resumed run continues the same stream).
Validation is a FIXED synthetic set: the same generator over the validation-fold batches, re-seeded
per batch with ``optim.val_seed`` (and batch index and rank), so every validation sees the same
anomalies and ``val_loss`` is comparable across validations (early stopping, best checkpoint).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import MoodError
from ...training.appearance import TrainingStream, change_appearance
from ...training.module import ConfigModule
from .anomalies import AnomalyGenerator
from .config import SegmenterTrainConfig
from .model import SegmenterNet, supervision_weights


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 0.0) -> torch.Tensor:
    """BCE-with-logits against the soft blend-factor target, plus ``dice_weight`` x soft Dice (batch-pooled)."""
    logits = logits.float()
    loss = F.binary_cross_entropy_with_logits(logits, target)
    if dice_weight > 0:
        p = torch.sigmoid(logits)
        inter = (p * target).sum()
        dice = 1.0 - (2.0 * inter + 1.0) / (p.sum() + target.sum() + 1.0)
        loss = loss + dice_weight * dice
    return loss


class SegmenterModule(ConfigModule):
    config_class = SegmenterTrainConfig

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        m = self.cfg.model
        self.net = SegmenterNet(self.cfg.dim, m.features, m.dropout, seed=self.cfg.trainer.seed, net=m.net,
                                deep_supervision=m.deep_supervision)
        self.generator = AnomalyGenerator(self.cfg.anomalies.settings())
        self.val_generator = AnomalyGenerator(self.cfg.anomalies.validation_settings())
        self.appearance = self.cfg.appearance.settings()
        self.stream = TrainingStream("segmenter_generator_state", self.cfg.trainer.seed)

    # ------------------------------------------------------------------ random stream (kept in the checkpoint)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.stream.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.stream.load(checkpoint)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        gen = self.stream.get(batch.device, self.global_rank)
        x, target = self.generator(batch, gen)
        x = change_appearance(x, gen, self.appearance)  # after the anomaly: the target is untouched
        heads = self.net.heads(x)  # one, or the deep-supervision heads (main first)
        loss = sum(w * segmentation_loss(h, target, self.cfg.optim.dice_weight)
                   for w, h in zip(supervision_weights(len(heads)), heads))
        if batch.device.type == "cpu" or self.global_step % self.cfg.trainer.log_every == 0:
            value = float(loss.detach())
            if not np.isfinite(value):
                raise MoodError(f"training loss is not finite at step {self.global_step}; lower optim.lr (now {self.cfg.optim.lr:g})")
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch.shape[0])
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        gen = torch.Generator(device=batch.device)
        gen.manual_seed(int(self.cfg.optim.val_seed) * 1_000_003 + batch_idx * 4099 + int(self.global_rank))
        x, target = self.val_generator(batch, gen)
        loss = segmentation_loss(self.net(x), target, self.cfg.optim.dice_weight)
        self.log("val_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch.shape[0])

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        if o.schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=o.max_steps, pct_start=0.3)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
