"""SimCLR pre-training of the VGG19 conv stack (the seed's step 3), as a LightningModule."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..models.ntxent import SimCLRNet, nt_xent
from .augment import SimCLRAugment, seeded_rng
from .config import SimCLRConfig
from .module import ConfigModule


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class SimCLRModule(ConfigModule):
    """Two augmented views per slice -> VGG19 + projection head -> NT-Xent."""

    config_class = SimCLRConfig

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        m = self.cfg.model
        self.net = SimCLRNet(width=m.width, hidden=m.hidden, out_dim=m.out_dim, seed=self.cfg.trainer.seed)
        self.augment = SimCLRAugment(self.cfg.augment)
        self._channels_last = False

    def on_fit_start(self) -> None:
        want = self.cfg.trainer.channels_last
        self._channels_last = (self.device.type == "cuda") if want is None else bool(want)
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        v1, v2 = self.augment(x), self.augment(x)
        if self._channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        z = self.net(torch.cat([v1, v2], dim=0))
        n = x.shape[0]
        return nt_xent(z[:n], z[n:], self.cfg.optim.temperature)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch.shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        # the same views every epoch, so validation losses are comparable
        with seeded_rng(self.cfg.trainer.seed * 100_003 + batch_idx, batch.device):
            loss = self._loss(batch)
        self.log("val_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch.shape[0])

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        opt = torch.optim.Adam(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, o.epochs)) if o.max_steps is None else max(1, self._steps_per_epoch())
        warmup = min(int(round(o.warmup_epochs * per_epoch)), max(0, total - 1))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def _steps_per_epoch(self) -> int:
        loader = self.trainer.datamodule.train_dataloader()
        return len(loader) // max(1, self.trainer.world_size)
