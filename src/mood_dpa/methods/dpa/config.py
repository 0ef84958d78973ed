"""The DPA's training config: autoencoder, loss (perceptual backbone or plain L1), optimiser.

``mood-dpa train CONFIG`` reads it when the YAML's ``method`` is ``dpa`` (the default, so configs
written before methods existed keep working).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ...config import StrictModel
from ...training.appearance import AppearanceConfig
from ...training.config import DataConfig, StepBudgetConfig, TrainerConfig


class ModelConfig(StrictModel):
    arch: Literal["residual9", "residual18"] = "residual9"
    channels: int = Field(128, ge=1, description="C: width of every conv")
    latent: int = Field(128, ge=1, description="d: latent size (d x 1 x 1)")
    size: int = Field(128, description="model input size S (slices are resized to SxS); power of two in 32..256")

    @field_validator("size")
    @classmethod
    def _pow2(cls, v: int) -> int:
        if v < 32 or v > 256 or v & (v - 1):
            raise ValueError("must be a power of two in 32..256")
        return v


class LossConfig(StrictModel):
    kind: Literal["perceptual", "l1"] = Field("perceptual", description="relative perceptual L1, or plain pixel L1 (reference)")
    backbone: str = Field("vgg19", description="perceptual backbone (mood_dpa.models.backbones), e.g. vgg19")
    vgg: Optional[str] = Field(None, description="VGG19 weight file (our SimCLR export or torchvision); None: seeded random VGG")
    vgg_width: float = Field(1.0, gt=0, description="VGG channel multiplier (must match the file)")
    layers: list[str] = Field(default_factory=lambda: ["relu3_2"], min_length=1)
    weights: Optional[list[float]] = Field(None, description="one weight per layer (default 1 each)")
    normaliser: Literal["slice", "volume"] = Field(
        "volume", description="denominator used at inference: per slice, or one per volume (the seed's)"
    )

    @model_validator(mode="after")
    def _weights(self) -> "LossConfig":
        if self.weights is not None and len(self.weights) != len(self.layers):
            raise ValueError(f"{len(self.layers)} layer(s) but {len(self.weights)} weight(s)")
        return self


class DPAOptimConfig(StepBudgetConfig):
    """The seed's optimiser: Adam, batch 64, up to 300,000 steps, validation every 10,000 (the budget fields)."""

    lr: float = Field(1e-4, gt=0)
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant: the seed's Adam at lr throughout; cosine: lr decays to 0 at max_steps "
                                "(for a fixed, short budget, e.g. the CPU demo)")
    abort_above: float = Field(1e3, gt=0, description="stop with an error when the training loss exceeds this or is not finite")


class DPATrainConfig(StrictModel):
    """``mood-dpa train CONFIG``: one autoencoder for one axis."""

    method: Literal["dpa"] = Field("dpa", description="the method this config trains (mood_dpa.methods.registry)")
    name: str = "dpa"
    run_dir: str = Field(description="output folder: checkpoints/, logs/, images/, config.yaml, model.pt")
    data: DataConfig
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    appearance: AppearanceConfig = Field(AppearanceConfig(), description="another scanner's look for a share of the "
                                         "normal training slices (input and target alike; p 0: off)")
    optim: DPAOptimConfig = DPAOptimConfig()
    trainer: TrainerConfig = TrainerConfig()
