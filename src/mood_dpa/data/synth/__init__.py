"""Synthetic anomalies (MOOD-style) and the toy layout writer.

Python entry points::

    from mood_dpa.data.synth import make_synthetic_set, apply_anomaly, KINDS
    rows = make_synthetic_set(volume_paths, "val_synth", kinds=None, per_volume=(1, 3), seed=0)

Each kind is a small function ``fn(data, region, rng, **options) -> (out, params)`` (see ``kinds``);
regions come from ``regions.sample_region`` / ``regions.make_region``.
"""

from .kinds import KINDS, MIN_CHANGE, changed_mask, ellipsoid, noise, patch, reflect, shift, sink, source, uniform
from .layout import MANIFEST_FIELDS, apply_anomaly, make_synthetic_set, parse_kinds, parse_range, read_fold_ids, read_manifest
from .regions import SHAPES, Region, make_region, sample_region, seed_ellipsoid_region

__all__ = [
    "KINDS", "MIN_CHANGE", "MANIFEST_FIELDS", "SHAPES", "Region",
    "apply_anomaly", "changed_mask", "make_region", "make_synthetic_set", "parse_kinds", "parse_range",
    "read_fold_ids", "read_manifest", "sample_region", "seed_ellipsoid_region",
    "ellipsoid", "uniform", "noise", "sink", "source", "shift", "reflect", "patch",
]
