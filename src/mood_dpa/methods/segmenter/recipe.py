"""How ``fit`` makes the segmenters (2-D on every axis's slices, 3-D on volume patches), and which
evaluation kinds a trained segmenter has seen (the anomaly families its generator had switched on)."""

from typing import Any, Mapping

from ..registry import Recipe
from .settings import (  # torch-free: the registry reads this module cheaply
    FAMILY_KINDS,
    AnomalySettings,
)

_CPU_2D = ("optim.max_steps=20000", "optim.val_every=500", "optim.patience=6")
_CPU_3D = ("optim.max_steps=10000", "optim.val_every=500", "optim.patience=6")

RECIPES = (
    Recipe(
        "segmenter2d", "Segmenter 2-D", "all_stores", families=True,
        configs={"demo": "segmenter/demo_2d.yaml", "seed": "segmenter/mood_{kind}_2d.yaml"},
        overrides={"quick": ("optim.max_steps=40", "optim.val_every=20"), "demo": ("optim.max_steps=2500",),
                   "cpu": _CPU_2D, "long": _CPU_2D},
        note="a 2-D U-Net (one model, slices of every axis) trained to segment anomalies it synthesises on normal "
             "slices (foreign patches, Poisson blends, intensity and texture changes).",
    ),
    Recipe(
        "segmenter3d", "Segmenter 3-D", "volumes", families=True,
        configs={"demo": "segmenter/demo_3d.yaml", "seed": "segmenter/mood_{kind}_3d.yaml"},
        # not in the demo's default methods (--method all adds it and the plain-L1 AE): on the shift benchmark
        # (40 subjects) 3,000 one-cycle steps reached pixel AP 0.097 on the training scanner and 0.137 on a new
        # one (the 2-D segmenter: 0.198 and 0.084); 1,000 steps 0.038 and 0.063 (BENCHMARKS.md "3-D segmenter")
        overrides={"quick": ("optim.max_steps=20", "optim.val_every=10"),
                   "demo": ("optim.max_steps=3000", "optim.val_every=750", "optim.schedule=onecycle", "optim.patience=100"),
                   "cpu": _CPU_3D, "long": _CPU_3D},
        note="a 3-D U-Net on patches trained like the 2-D segmenter; sliding-window inference.",
    ),
)


def seen_kinds(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """The evaluation kinds whose family the model's training generator had switched on (weight > 0)."""
    cfg = (meta.get("train_config") or {}).get("anomalies") or {}
    defaults = AnomalySettings()
    kinds: list[str] = []
    for family, covered in FAMILY_KINDS.items():
        if float(cfg.get(family, getattr(defaults, family))) > 0:
            kinds += [k for k in covered if k not in kinds]
    return tuple(kinds)
