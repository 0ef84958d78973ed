"""Anomalous cases and the MOOD toy layout.

:func:`apply_anomaly` composes one kind over 1-3 regions of one volume and returns the volume, its
pixel label and a record; :func:`make_synthetic_set` writes a whole validation set::

    OUT/toy/<case>.nii.gz                       the volume (float32)
    OUT/toy_label/pixel/<case>.nii.gz           uint8 mask of the changed voxels
    OUT/toy_label/sample/<case>.nii.gz.txt      "0" or "1"
    OUT/manifest.csv                            case,file,source,volume_id,kind,scope,label,regions,voxels,centre,params

Every source volume gives one normal copy (``<stem>_normal``) and one anomalous case per kind
(``<stem>_<kind>``). ``scope`` is ``local`` (:data:`KINDS`, a region changed; the pixel label is the
changed voxels) or ``global`` (:data:`GLOBAL_KINDS`, the whole volume changed; the pixel label is the
changed foreground, see ``global_kinds``); ``normal`` cases have scope ``none``. Randomness comes only from ``seed``: each case draws from its own generator
seeded with (seed, volume index, kind index), so the same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...atomic import atomic_dir
from ...errors import MoodError
from ...progress import track
from ...volumes import read_volume, volume_id, write_volume
from ..mood import read_manifest  # noqa: F401  (re-exported: the manifest is written here)
from .global_kinds import GLOBAL_KINDS, global_label
from .kinds import KINDS, MIN_CHANGE, changed_mask
from .regions import SHAPES, foreground_centres, sample_region, seed_ellipsoid_region

MANIFEST_FIELDS = ("case", "file", "source", "volume_id", "kind", "scope", "label", "regions", "voxels", "centre", "params",
                   "source_sha256")

#: Local then global kinds: a kind's place here seeds its generator, so adding global kinds after the
#: local ones leaves every local case byte-identical.
ALL_KINDS: dict = {**KINDS, **GLOBAL_KINDS}
#: Names that stand for a group of kinds in ``--kinds``.
KIND_GROUPS = {"local": list(KINDS), "global": list(GLOBAL_KINDS), "all": list(ALL_KINDS)}


#: The local (region) kinds, in order: the default evaluation and tuning kinds.
LOCAL_KINDS: tuple[str, ...] = tuple(KINDS)


def kind_scope(kind: str) -> str:
    """``global`` for a whole-volume kind, ``none`` for normal cases, ``local`` for a region kind (a kind
    synth does not know, e.g. a user's own ``tumour`` in a manifest without a scope column, counts as local)."""
    if kind == "normal":
        return "none"
    return "global" if kind in GLOBAL_KINDS else "local"


def parse_kinds(kinds: str | Iterable[str] | None) -> list[str]:
    """``None`` -> the local kinds (so default sets stay comparable); else a comma-separated string or
    a list of kind names and groups (``local``, ``global``, ``all``), checked, duplicates dropped."""
    if kinds is None:
        return list(KINDS)
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    expanded = [k for name in kinds for k in KIND_GROUPS.get(name, [name])]
    bad = [k for k in expanded if k not in ALL_KINDS]
    if bad or not expanded:
        raise MoodError(
            f"unknown anomaly kind {', '.join(bad) or '(none)'}; choose from {', '.join(ALL_KINDS)} "
            f"or the groups {', '.join(KIND_GROUPS)}"
        )
    return list(dict.fromkeys(expanded))


def parse_range(value: int | str | Sequence[int], what: str = "--per-volume") -> tuple[int, int]:
    """``2`` or ``"1-3"`` or ``(1, 3)`` -> (low, high), both >= 1."""
    try:
        if isinstance(value, str):
            parts = value.split("-")
            lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        elif isinstance(value, (int, np.integer)):
            lo = hi = int(value)
        else:
            lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or hi is None or lo < 1 or hi < lo:
        raise MoodError(f"{what} {value!r}: expected a count like 2 or a range like 1-3")
    return lo, hi


def apply_anomaly(
    data: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    n_regions: int = 1,
    donor: np.ndarray | None = None,
    shape: str | None = None,
    soft: bool | None = None,
    min_change: float = MIN_CHANGE,
    candidates: np.ndarray | None = None,
    max_tries: int = 5,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Put ``n_regions`` anomalies of ``kind`` into ``data``.

    Returns (volume float32 in [0,1], label uint8 = voxels changed by more than ``min_change``, record
    with centres and per-region parameters). A global kind (:data:`GLOBAL_KINDS`) changes the whole
    volume instead: no regions, label = :func:`~.global_kinds.global_label`, its parameters in the record. A draw that changes almost nothing (fewer changed voxels
    than 10 % of the region) is redrawn up to ``max_tries`` times; the best draw is kept.
    """
    if kind not in ALL_KINDS:
        raise MoodError(f"unknown anomaly kind {kind!r}; choose from {', '.join(ALL_KINDS)}")
    data = np.asarray(data, dtype=np.float32)
    if kind in GLOBAL_KINDS:  # the whole volume: no regions, the label is the changed foreground
        out, params = GLOBAL_KINDS[kind](data, rng)
        label = global_label(data, out, min_change)
        return out, label, {"kind": kind, "regions": [params], "voxels": int(label.sum())}
    if kind == "patch" and donor is None:
        raise MoodError("the patch anomaly needs a donor volume (another volume of the set)")
    if kind != "ellipsoid" and candidates is None:
        candidates = foreground_centres(data, step=2 if min(data.shape) >= 128 else 1)
    fn = KINDS[kind]
    best = None
    for _ in range(max_tries):
        out = data
        regions, size = [], 0.0
        for _r in range(n_regions):
            if kind == "ellipsoid":
                region = seed_ellipsoid_region(data, rng)
            else:
                region = sample_region(data, rng, shape=shape, soft=soft, candidates=candidates)
            extra = {"donor": donor} if kind == "patch" else {}
            out, params = fn(out, region, rng, **extra)
            regions.append({**region.describe(), **params})
            size += float((region.weight >= 0.5).sum())
        label = changed_mask(data, out, min_change)
        changed = int(label.sum())
        record = {"kind": kind, "regions": regions, "voxels": changed}
        if best is None or changed > best[1]["voxels"]:
            best = (out, record, label)
        if changed >= max(1.0, 0.1 * size):
            break
    out, record, label = best
    return out, label, record


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def make_synthetic_set(
    volume_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    kinds: str | Iterable[str] | None = None,
    per_volume: int | str | Sequence[int] = (1, 3),
    seed: int = 0,
    *,
    cases_per_volume: int | None = None,
    shape: str | None = None,
    soft: bool | None = None,
    min_change: float = MIN_CHANGE,
    compresslevel: int = 1,
    progress: bool = True,
) -> list[dict]:
    """Write a MOOD toy-layout validation set from healthy volumes; returns the manifest rows.

    - ``kinds``: names from :data:`ALL_KINDS` or the groups local / global / all (default: the local
      kinds, :data:`KINDS`); each volume gets one case per kind, or
      ``cases_per_volume`` kinds drawn at random per volume.
    - ``per_volume``: number of anomaly regions per anomalous case, an int or a range ``(1, 3)``/"1-3".
    - ``shape``/``soft``: force a region shape (sphere, ellipsoid, smooth) or edge; random when None.
    The output folder is replaced atomically (nothing half-written is left on failure).
    """
    paths = [Path(p) for p in volume_paths]
    if not paths:
        raise MoodError("no volumes given to make a synthetic set from")
    kinds = parse_kinds(kinds)
    lo, hi = parse_range(per_volume)
    if shape is not None and shape not in SHAPES:
        raise MoodError(f"unknown region shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if cases_per_volume is not None and not 1 <= cases_per_volume <= len(kinds):
        raise MoodError(f"--cases-per-volume must be between 1 and {len(kinds)}")
    stems = [_stem(p) for p in paths]
    if len(set(stems)) != len(stems):
        raise MoodError("two input volumes have the same name; case names would collide")
    rows: list[dict] = []
    items = list(enumerate(paths))
    iterator = track(items, "synthetic anomalies") if progress else items
    with atomic_dir(out_dir) as tmp:
        toy, pix, smp = tmp / "toy", tmp / "toy_label" / "pixel", tmp / "toy_label" / "sample"
        for d in (toy, pix, smp):
            d.mkdir(parents=True, exist_ok=True)

        def write_case(case: str, vol, volume: np.ndarray, label: np.ndarray, row: dict) -> None:
            fname = f"{case}.nii.gz"
            write_volume(toy / fname, volume, vol.affine, vol.header, np.float32, compresslevel)
            write_volume(pix / fname, label, vol.affine, vol.header, np.uint8, compresslevel)
            (smp / f"{fname}.txt").write_text(f"{int(row['label'])}\n")
            rows.append({"case": case, "file": fname, **row})

        for vi, path in iterator:
            vol = read_volume(path)
            data = np.clip(vol.data, 0.0, 1.0).astype(np.float32)
            vid = volume_id(path)
            # the source's CONTENT (not its name: two prepared folders both start at 00000.nii.gz), so that
            # evaluate can tell a test set made from the tuning set's volumes (mood_dpa.inference.record)
            base = {"source": path.name, "volume_id": vid, "source_sha256": hashlib.sha256(data.tobytes()).hexdigest()}
            write_case(
                f"{stems[vi]}_normal", vol, data, np.zeros(data.shape, np.uint8),
                {**base, "kind": "normal", "scope": "none", "label": 0, "regions": 0, "voxels": 0, "centre": "[]", "params": "[]"},
            )
            chosen = list(range(len(kinds)))
            if cases_per_volume is not None:
                pick = np.random.default_rng([seed, vi, 1_000_003])
                chosen = sorted(pick.choice(len(kinds), size=cases_per_volume, replace=False).tolist())
            candidates = foreground_centres(data, step=2 if min(data.shape) >= 128 else 1)
            for ki in chosen:
                kind = kinds[ki]
                rng = np.random.default_rng([seed, vi, list(ALL_KINDS).index(kind)])
                n_regions = int(rng.integers(lo, hi + 1)) if kind in KINDS else 0
                donor = None
                if kind == "patch":
                    if len(paths) > 1:
                        other = int(rng.integers(len(paths) - 1))
                        other += other >= vi
                        donor = np.clip(read_volume(paths[other]).data, 0.0, 1.0)
                    else:  # a single volume: use its mirror image as the foreign subject
                        donor = data[::-1].copy()
                out, label, record = apply_anomaly(
                    data, kind, rng, n_regions=n_regions, donor=donor, shape=shape, soft=soft,
                    min_change=min_change, candidates=candidates,
                )
                voxels = int(label.sum())
                write_case(
                    f"{stems[vi]}_{kind}", vol, out, label,
                    {
                        **base, "kind": kind, "scope": kind_scope(kind), "label": int(voxels > 0), "regions": n_regions,
                        "voxels": voxels, "centre": json.dumps([r["centre"] for r in record["regions"] if "centre" in r]),
                        "params": json.dumps(record["regions"]),
                    },
                )
        write_manifest(tmp / "manifest.csv", rows)
    return rows


def write_manifest(path: Path, rows: list[dict]) -> None:
    """Write a manifest.csv (the columns of :data:`MANIFEST_FIELDS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in MANIFEST_FIELDS})
    path.write_text(buf.getvalue())
