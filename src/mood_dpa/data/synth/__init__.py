"""Synthetic anomalies (MOOD-style) and the toy layout writer.

Python entry points::

    from mood_dpa.data.synth import make_synthetic_set, apply_anomaly, KINDS
    rows = make_synthetic_set(volume_paths, "val_synth", kinds=None, per_volume=(1, 3), seed=0)

Each local kind is a small function ``fn(data, region, rng, **options) -> (out, params)`` (see
``kinds``); regions come from ``regions.sample_region`` / ``regions.make_region``. Global kinds
(``global_kinds``: the whole volume changed) are ``fn(data, rng, **options) -> (out, params)``;
``make_synthetic_set(..., kinds="all")`` mixes both, the default is the local kinds.
"""

from .kinds import KINDS, MIN_CHANGE, changed_mask, ellipsoid, noise, patch, reflect, shift, sink, source, uniform
from .global_kinds import GLOBAL_KINDS, global_label
from .layout import ALL_KINDS, KIND_GROUPS, MANIFEST_FIELDS, apply_anomaly, kind_scope, make_synthetic_set, parse_kinds, parse_range, read_manifest
from .regions import SHAPES, Region, make_region, sample_region, seed_ellipsoid_region

__all__ = [
    "KINDS", "GLOBAL_KINDS", "ALL_KINDS", "KIND_GROUPS", "global_label", "kind_scope", "MIN_CHANGE", "MANIFEST_FIELDS", "SHAPES", "Region",
    "apply_anomaly", "changed_mask", "make_region", "make_synthetic_set", "parse_kinds", "parse_range",
    "read_manifest", "sample_region", "seed_ellipsoid_region",
    "ellipsoid", "uniform", "noise", "sink", "source", "shift", "reflect", "patch",
]
