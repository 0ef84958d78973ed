"""What the training-anomaly generator draws: the families and their weights, the region shapes (the one
settings object the shapes, the families and the generator share)."""

from __future__ import annotations

from dataclasses import dataclass

#: The families, in the order of their weights in :class:`AnomalySettings` and of their codes in ``last_families``.
FAMILIES = ("fpi", "poisson", "intensity", "deform", "lesion")
#: Per family, the evaluation kinds (mood_dpa.data.synth) of the same family: a model trained with the
#: family switched on has "seen" them (:func:`mood_dpa.methods.segmenter.recipe.seen_kinds`).
FAMILY_KINDS = {"fpi": ("patch",), "poisson": ("patch",), "intensity": ("uniform", "noise"),
                "deform": ("sink", "source"), "lesion": ("ellipsoid", "uniform")}


@dataclass(frozen=True)
class AnomalySettings:
    """What the generator draws (see :class:`~.config.AnomalyConfig` for the documented fields)."""

    normal_p: float = 0.2
    fpi: float = 0.45
    poisson: float = 0.2
    intensity: float = 0.35
    deform: float = 0.0
    lesion: float = 0.0
    radius: tuple[float, float] = (0.04, 0.25)  # component radius as a fraction of the image side
    max_components: int = 3
    noise_shape_p: float = 0.4
    tube_p: float = 0.0
    difference_p: float = 0.0
    foreground_p: float = 0.9
    eps: float = 1e-3

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, f)) for f in FAMILIES)
