"""The sizes of one ``fit``: presets (slice size, folds, default methods, SimCLR budget, tuning set).

The per-method sizes of each preset live with the method (its ``recipe.py``, read through
:mod:`mood_dpa.methods.registry`); a preset here names the config GROUP the recipes take their packaged
configs from (``demo`` for the demo-scale presets, ``seed`` for the MOOD scale).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MoodError

#: Axes the seed trained per dataset (abdomen: 0 and 2 only).
AXES = {"brain": (0, 1, 2), "abdom": (0, 2)}
#: Every method fit can train, when a preset or --method says "all".
ALL = "all"


@dataclass(frozen=True)
class Preset:
    """Sizes of one fit. ``methods``: recipe names trained by default (``all``: every recipe)."""

    name: str
    slice_size: int
    n_folds: int
    methods: tuple[str, ...] | str
    group: str  # the recipes' config group: "demo" or "seed"
    simclr_config: str
    simclr_overrides: tuple[str, ...] = ()
    tuning_per_volume: int | None = 1  # tuning cases per validation volume (None: one of every kind)
    description: str = ""
    held_out: str = "none"  # family recipes: none, each, or groups "a+b,c" (fit.parse_held_out)
    flips: bool = False  # let the tuning set choose each member's test-time flips
    # map every volume's intensities onto the training landmarks before the voxel-map members score it: on the
    # shift benchmark it raised every detector's pixel AP on both the training scanner and a new one
    standardise: bool = True


_SIMCLR_CPU = ("optim.epochs=20", "optim.max_steps=2000")

PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", 32, 4, ALL, "demo", "demo/simclr.yaml",
                    ("model.width=0.125", "optim.max_steps=10", "augment.crop_size=32"),
                    description="a smoke run: tiny models, a minute or two on a CPU (numbers mean nothing)"),
    # the DPA (8 of the demo's minutes on today's 2 cores for +0.003 pixel AP in the ensemble) is in cpu and long
    "demo": Preset("demo", 64, 5, ("histogram", "segmenter2d", "volume-histogram"), "demo", "demo/simclr.yaml",
                   ("optim.max_steps=40", "augment.crop_size=48"),
                   description="the CPU demo scale: 64^3 volumes, 64x64 slices, narrow models (the 2-D segmenter, the "
                               "histogram baselines), about thirteen minutes on 2 cores"),
    "cpu": Preset("cpu", 64, 5, ("histogram", "dpa", "segmenter2d"), "demo", "demo/simclr.yaml", _SIMCLR_CPU,
                  tuning_per_volume=None,
                  description="a CPU without a deadline: the demo's model shapes (64x64 slices, wider DPA) trained to early "
                              "stopping, hours on a few cores"),
    # the demo's `--preset long`: the cpu preset's sizes for every method (the plain-L1 AE and the 3-D segmenter too)
    "long": Preset("long", 64, 5, ALL, "demo", "demo/simclr.yaml", _SIMCLR_CPU, tuning_per_volume=None,
                   description="every method at the cpu preset's sizes, trained to early stopping (the demo's --preset long)"),
    "seed": Preset("seed", 128, 10, ("histogram", "dpa", "segmenter3d"), "seed", "simclr.yaml", tuning_per_volume=None,
                   description="the MOOD scale: the seed's submitted DPA configs (128x128, C=128, SimCLR VGG19), a GPU for days"),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise MoodError(f"--preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
