"""Typed config of ``mood-dpa train CONFIG`` for ``method: segmenter`` (2-D per slice or 3-D on patches).

Relative paths are taken relative to the current working directory, like every other path.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ...config import StrictModel
from ...training.appearance import AppearanceConfig
from ...training.config import DataConfig, StepBudgetConfig, TrainerConfig
from .anomalies import FAMILIES, AnomalySettings


class VolumeDataConfig(StrictModel):
    """3-D training data: volumes of one folder (native size, kept in memory) split by fold."""

    volumes: str = Field(description="folder of training volumes (*.nii.gz)")
    folds: Optional[str] = Field(None, description="folds CSV (filename,test_fold); None: seeded folds over the folder")
    fold: int = Field(0, ge=0, description="validation fold; the others train")
    n_folds: int = Field(10, ge=2, description="number of folds made when 'folds' is None")
    folds_seed: int = Field(0)
    foreground_p: float = Field(0.9, ge=0, le=1, description="share of training patches centred on a foreground voxel")
    val_patches: int = Field(64, ge=1, description="fixed validation patches (seeded) drawn from the validation volumes")
    num_workers: int = Field(0, ge=0)


class SegmenterModelConfig(StrictModel):
    """MONAI BasicUNet (six feature counts: 5 encoder levels + the last decoder level) or DynUNet (the first five
    feature counts; optional deep supervision); one logit channel."""

    features: tuple[int, int, int, int, int, int] = (32, 32, 64, 128, 256, 32)
    net: Literal["basic", "dynunet"] = Field(
        "basic", description="basic: MONAI BasicUNet; dynunet: MONAI DynUNet (nnU-Net's), which can deep-supervise")
    deep_supervision: int = Field(
        0, ge=0, le=3, description="dynunet only: this many lower decoder levels get their own output head, trained "
                                   "against the same target (weights 1/2, 1/4, ...; nnU-Net's); 0: off")
    size: int = Field(128, description="2-D: slice side the model sees (slices are resized to it); a multiple of 16, >= 32")
    patch: tuple[int, int, int] = Field((128, 128, 128), description="3-D: training patch and sliding-window size (multiples of 16, >= 32)")
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _supervision_needs_dynunet(self) -> "SegmenterModelConfig":
        if self.deep_supervision and self.net != "dynunet":
            raise ValueError("deep_supervision needs net: dynunet (MONAI's BasicUNet has one output head)")
        return self

    @field_validator("size")
    @classmethod
    def _size(cls, v: int) -> int:
        if v < 32 or v % 16:
            raise ValueError("must be a multiple of 16 and >= 32 (the U-Net halves it four times; instance norm needs > 1 voxel)")
        return v

    @field_validator("patch")
    @classmethod
    def _patch(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(p < 32 or p % 16 for p in v):
            raise ValueError("every side must be a multiple of 16 and >= 32 (four halvings; instance norm needs > 1 voxel)")
        return v


class AnomalyConfig(StrictModel):
    """The training-time generator (:mod:`.anomalies`): family weights, shapes, how many images stay normal."""

    normal_p: float = Field(0.2, ge=0, le=1, description="share of training images left normal (target all 0)")
    fpi: float = Field(0.45, ge=0, description="relative weight: foreign patch of another image, alpha ~ U(0,1)")
    poisson: float = Field(0.2, ge=0, description="relative weight: gradient-domain (Poisson-style) blend of another image")
    intensity: float = Field(0.35, ge=0, description="relative weight: offset, gamma, local noise, blur, sharpen")
    deform: float = Field(0.0, ge=0, description="relative weight: radial sink / source displacement inside the region")
    lesion: float = Field(0.0, ge=0, description="relative weight: a smooth hypo- or hyper-intense lesion with soft edges")
    radius: tuple[float, float] = Field((0.04, 0.25), description="component radius range, fraction of the image side")
    max_components: int = Field(3, ge=1, description="components (ellipsoids / noise blobs) per region, 1..this")
    noise_shape_p: float = Field(0.4, ge=0, le=1, description="share of components that are thresholded smooth noise")
    tube_p: float = Field(0.0, ge=0, le=1, description="share of components that are thin bent tubes")
    difference_p: float = Field(0.0, ge=0, le=1, description="share of regions with another ellipsoid cut out (crescents, rings)")
    foreground_p: float = Field(0.9, ge=0, le=1, description="share of regions cut to the foreground (x > 0)")
    eps: float = Field(1e-3, gt=0, description="a voxel counts as changed (label > 0) when |x' - x| exceeds this")
    val_families: Optional[list[str]] = Field(
        None, description="validate (early stopping, best checkpoint) on these families only, e.g. the one held out of "
                          "training; None: on the training mix")

    @model_validator(mode="after")
    def _some_family(self) -> "AnomalyConfig":
        if self.fpi + self.poisson + self.intensity + self.deform + self.lesion <= 0:
            raise ValueError("at least one family weight (fpi, poisson, intensity, deform, lesion) must be > 0")
        unknown = sorted(set(self.val_families or ()) - set(FAMILIES))
        if unknown or self.val_families == []:
            raise ValueError(f"val_families: unknown or empty ({', '.join(unknown)}); choose from {', '.join(FAMILIES)}")
        if not 0 < self.radius[0] <= self.radius[1]:
            raise ValueError("radius must be (low, high) with 0 < low <= high")
        return self

    def settings(self) -> AnomalySettings:
        """The training generator's settings."""
        return AnomalySettings(**self.model_dump(exclude={"val_families"}))

    def validation_settings(self) -> AnomalySettings:
        """The validation generator's: the training mix, or only ``val_families`` (each at weight 1)."""
        if self.val_families is None:
            return self.settings()
        only = {f: (1.0 if f in self.val_families else 0.0) for f in FAMILIES}
        return AnomalySettings(**{**self.model_dump(exclude={"val_families"}), **only})


#: The segmenter's budget defaults (the base's are the seed DPA's).
BUDGET_DEFAULTS = {"batch_size": 16, "max_steps": 100_000, "val_every": 2_000, "min_delta": 0.0005, "patience": 5}


class SegmenterOptimConfig(StepBudgetConfig):
    """AdamW; batch >= 2 (FPI takes its donor from another image of the batch); budget defaults :data:`BUDGET_DEFAULTS`."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: Literal["constant", "onecycle"] = Field(
        "constant", description="constant: AdamW at lr throughout; onecycle: warm up to lr over the first 30 % of "
                                "max_steps, then anneal to ~0 (CitAI's schedule, for a fixed budget)")
    dice_weight: float = Field(0.0, ge=0, description="weight of a soft Dice term added to the BCE (0: BCE only)")
    val_seed: int = Field(12345, description="seed of the fixed synthetic validation anomalies")

    @model_validator(mode="before")
    @classmethod
    def _segmenter_defaults(cls, data):
        return cls.with_defaults(data, BUDGET_DEFAULTS)

    @model_validator(mode="after")
    def _two_per_batch(self) -> "SegmenterOptimConfig":
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (FPI takes its donor from another image of the batch)")
        return self


class SegmenterTrainConfig(StrictModel):
    """``mood-dpa train CONFIG`` with ``method: segmenter``."""

    method: Literal["segmenter"]
    name: str = "segmenter"
    dim: Literal[2, 3] = 2
    run_dir: str = Field(description="output folder: checkpoints/, logs/, config.yaml, model.pt, summary.json")
    data: DataConfig | VolumeDataConfig = Field(description="2-D: slice stores (DataConfig); 3-D: a volume folder and folds")
    model: SegmenterModelConfig = SegmenterModelConfig()
    anomalies: AnomalyConfig = AnomalyConfig()
    appearance: AppearanceConfig = AppearanceConfig()
    optim: SegmenterOptimConfig = SegmenterOptimConfig()
    trainer: TrainerConfig = TrainerConfig()

    @model_validator(mode="after")
    def _data_matches_dim(self) -> "SegmenterTrainConfig":
        if self.dim == 2 and not isinstance(self.data, DataConfig):
            raise ValueError("dim 2 trains on slice stores: data needs 'stores'")
        if self.dim == 3 and not isinstance(self.data, VolumeDataConfig):
            raise ValueError("dim 3 trains on volume patches: data needs 'volumes'")
        return self
