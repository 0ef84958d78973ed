"""Typed configs shared by every training run (data, trainer) and SimCLR's (YAML, ``--set key=value`` overrides).

Each method's own config (model, loss, optimiser) lives beside it, e.g. :mod:`mood_dpa.methods.dpa.config`.

Relative paths in a config (slice stores, folds file, VGG file, run folder) are taken relative to
the current working directory, like every other path given on the command line.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from ..config import StrictModel


class DataConfig(StrictModel):
    """Which slices to train on and how to split them."""

    stores: list[str] = Field(min_length=1, description="slice store folders ('mood-dpa slices'); several are concatenated")
    folds: Optional[str | list[str]] = Field(
        None,
        description="folds CSV (filename,test_fold), or one CSV per store (datasets whose file names overlap); "
        "None: seeded folds over the stores' volumes",
    )
    fold: int = Field(0, ge=0, description="validation fold; the others train")
    n_folds: int = Field(10, ge=2, description="number of folds made when 'folds' is None")
    folds_seed: int = Field(0, description="seed of the folds made when 'folds' is None")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    max_val_slices: Optional[int] = Field(None, ge=1, description="evenly strided subset of the validation slices (speed)")

    @model_validator(mode="after")
    def _folds_per_store(self) -> "DataConfig":
        if isinstance(self.folds, list) and len(self.folds) != len(self.stores):
            raise ValueError(f"{len(self.folds)} folds files for {len(self.stores)} stores (give one, or one per store)")
        return self


class TrainerConfig(StrictModel):
    """Hardware, precision, logging and checkpointing (shared by SimCLR and DPA)."""

    accelerator: str = Field("auto", description="auto | cpu | gpu | cuda | mps")
    devices: int | str = Field(1, description="devices per node (DDP when > 1), or 'auto'")
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field("auto", description="Lightning strategy; 'auto' = DDP when several devices")
    precision: Literal["auto", "32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 elsewhere")
    channels_last: Optional[bool] = Field(None, description="None: on for CUDA only")
    seed: int = Field(0, description="seeds python, numpy, torch, loader workers and the model init")
    log_every: int = Field(50, ge=1, description="training-loss logging interval in steps")
    checkpoint_every: int = Field(500, ge=1, description="steps between 'last.ckpt' saves (what --resume continues)")
    image_count: int = Field(8, ge=0, description="slices in the PNG grid written at each validation (0: none)")
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (None: torch's default); 1 helps on busy machines")
    matmul_precision: Literal["highest", "high", "medium"] = Field("high", description="torch float32 matmul precision")


class StepBudgetConfig(StrictModel):
    """What the one runner reads of every method's ``optim`` section: batch, step budget, validation interval
    and the seed's early stopping. Defaults are the seed's DPA; a method states its own with a
    ``mode="before"`` validator calling :meth:`with_defaults` (see the segmenter's config)."""

    batch_size: int = Field(64, ge=1, description="per device")
    max_steps: int = Field(300_000, ge=1)
    val_every: int = Field(10_000, ge=1, description="validation interval in optimiser steps")
    min_delta: float = Field(0.002, ge=0, description="early stopping: an improvement must exceed this (absolute)")
    patience: int = Field(3, ge=1, description="early stopping: validations without improvement")

    @classmethod
    def with_defaults(cls, data, defaults: dict):
        """``data`` with a method's own defaults filled in where the config does not set them."""
        return {**defaults, **data} if isinstance(data, dict) else data


class AugmentConfig(StrictModel):
    """SimCLR's two random views (batched with kornia on the training device)."""

    crop_size: int = Field(96, ge=16)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = Field(0.5, ge=0, le=1)
    jitter: float = Field(0.8, ge=0, description="brightness and contrast jitter strength")
    jitter_p: float = Field(0.8, ge=0, le=1)
    blur_p: float = Field(0.5, ge=0, le=1)
    blur_kernel_frac: float = Field(0.1, gt=0, le=1, description="Gaussian blur kernel, as a fraction of the crop")
    blur_sigma: tuple[float, float] = (0.1, 2.0)


class SimCLRModelConfig(StrictModel):
    width: float = Field(1.0, gt=0, description="VGG19 channel multiplier (1 = the real VGG19)")
    hidden: int = Field(2048, ge=1)
    out_dim: int = Field(256, ge=1)


class SimCLROptimConfig(StrictModel):
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    batch_size: int = Field(256, ge=2, description="images per device (2x views)")
    epochs: int = Field(100, ge=1)
    max_steps: Optional[int] = Field(None, ge=1, description="optional cap on optimiser steps")
    warmup_epochs: float = Field(10, ge=0, description="linear warm-up, then cosine decay to 0 (stepped per iteration)")
    temperature: float = Field(0.5, gt=0)


class SimCLRConfig(StrictModel):
    """``mood-dpa pretrain CONFIG``: SimCLR pre-training of the VGG19 the perceptual loss uses."""

    name: str = "simclr"
    run_dir: str
    data: DataConfig
    model: SimCLRModelConfig = SimCLRModelConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: SimCLROptimConfig = SimCLROptimConfig()
    trainer: TrainerConfig = TrainerConfig()
