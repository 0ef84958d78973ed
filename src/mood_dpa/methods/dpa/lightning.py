"""The DPA LightningModule (the training wrapper around the plain modules of :mod:`.model`): a residual autoencoder trained with the relative perceptual L1 (or plain L1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...atomic import atomic_path
from ...errors import MoodError
from ...models.autoencoder import ResidualAE
from ...models.backbones import backbone
from ...models.perceptual import PixelL1, RelativePerceptualL1
from ...training.appearance import TrainingStream, change_appearance
from ...training.module import ConfigModule
from .config import DPATrainConfig, LossConfig


def build_loss(cfg: LossConfig, seed: int = 0) -> tuple[RelativePerceptualL1 | PixelL1, str | None]:
    """The loss module of a config and the sha256 of its backbone weight file (None: random weights or loss 'l1')."""
    if cfg.kind == "l1":
        return PixelL1(), None
    net = backbone(cfg.backbone)
    if cfg.vgg is None:
        return RelativePerceptualL1(net.build(tuple(cfg.layers), width=cfg.vgg_width, seed=seed), cfg.weights), None
    features = net.from_file(cfg.vgg, cfg.layers, width=cfg.vgg_width)
    return RelativePerceptualL1(features, cfg.weights), net.file_sha256(cfg.vgg)


class DPAModule(ConfigModule):
    """Trains ``ResidualAE`` on x in [0, 1] (fed as 2x-1); the loss sees x and (AE(2x-1)+1)/2 in [0, 1]."""

    config_class = DPATrainConfig

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        m = self.cfg.model
        self.autoencoder = ResidualAE(m.arch, m.channels, m.latent, m.size, seed=self.cfg.trainer.seed)
        self.loss_fn, self.vgg_sha256 = build_loss(self.cfg.loss, seed=self.cfg.trainer.seed)
        self._channels_last = False
        self._grid: tuple[torch.Tensor, torch.Tensor] | None = None
        self.image_dir: Path | None = None
        self.appearance = self.cfg.appearance.settings()
        self.stream = TrainingStream("appearance_generator_state", self.cfg.trainer.seed)

    # ------------------------------------------------------------------ setup
    def on_fit_start(self) -> None:
        want = self.cfg.trainer.channels_last
        self._channels_last = (self.device.type == "cuda") if want is None else bool(want)
        if self._channels_last:
            self.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        return (self.autoencoder(x01 * 2.0 - 1.0) + 1.0) * 0.5

    # ------------------------------------------------------------------ steps
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.stream.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.stream.load(checkpoint)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.appearance.active:  # another scanner's look is still normal: input and target change alike
            batch = change_appearance(batch, self.stream.get(batch.device, self.global_rank), self.appearance)
        x = self._prep(batch)
        loss = self.loss_fn(x, self.reconstruct(x))
        # the explosion check reads the loss back (a device sync): every step on CPU, every log_every on GPU
        if x.device.type == "cpu" or self.global_step % self.cfg.trainer.log_every == 0:
            self._check_loss(float(loss.detach()))
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def _check_loss(self, value: float) -> None:
        if not np.isfinite(value) or value > self.cfg.optim.abort_above:
            raise MoodError(
                f"training loss exploded ({value:.4g}) at step {self.global_step}; lower optim.lr "
                f"(now {self.cfg.optim.lr:g}) or resume from the last checkpoint"
            )

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x = self._prep(batch)
        y = self.reconstruct(x)
        loss = self.loss_fn.per_sample(x, y).mean()
        self.log("val_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        n = self.cfg.trainer.image_count
        if batch_idx == 0 and n > 0:
            self._grid = (x[:n].detach().float().cpu(), y[:n].detach().float().cpu())

    def on_validation_epoch_end(self) -> None:
        if self._grid is None or self.image_dir is None or not self.trainer.is_global_zero:
            return
        if self.trainer.sanity_checking:
            return
        save_grid(self.image_dir / f"step_{self.global_step:07d}.png", *self._grid)
        self._grid = None

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.autoencoder.parameters(), lr=self.cfg.optim.lr)
        if self.cfg.optim.schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.cfg.optim.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def save_grid(path: Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    """A PNG of inputs (top row) over reconstructions (bottom row), both shown in [0, 1]."""
    from matplotlib.image import imsave  # heavy: matplotlib only for the validation images

    top = np.concatenate([t[0].numpy() for t in x], axis=1)
    bottom = np.concatenate([t[0].numpy() for t in y], axis=1)
    img = np.clip(np.concatenate([top, bottom], axis=0), 0.0, 1.0)
    with atomic_path(path) as tmp:
        imsave(tmp, img, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return path
