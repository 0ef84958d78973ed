"""Fitting a detector: calibrations on NORMAL volumes, and the choice of its rules on a labelled TUNING set.

Why here and only here: every number a detector holds besides the model weights is fitted by
:func:`calibrate_detector` (``mood-dpa calibrate``, and ``fit`` for each detector it builds):

1. each map member's calibration (several members) or the final calibration (one member), fitted on the
   raw scores of a seeded voxel sample of the normal volumes (:mod:`mood_dpa.scoring.calibration`);
2. with a tuning set (``--val``, the synthetic-anomaly set of a validation fold; never the test set),
   three choices, each the best of a fixed candidate list by an exact AP on the tuning set, ties going
   to the earlier candidate (:func:`best_candidate`): how members combine (pooled pixel AP,
   :func:`member_rule_candidates`), the border rule (pooled pixel AP, :data:`BORDER_CANDIDATES`), the
   sample rule (sample AP, :data:`CANDIDATE_RULES`) and, with sample-level members, how their scores join
   (sample AP, :data:`SAMPLE_COMBINE_RULES`);
3. the record of what it was tuned on (``info.calibration.tuned_on``: folder, case names, manifest
   sha256, source volumes), which ``evaluate`` checks (:mod:`mood_dpa.data.provenance`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import MoodError
from ..evaluation.metrics import ScoreHistogram
from ..progress import track
from ..runtime import adapt_threads
from ..scoring.border import BORDER_CANDIDATES, BorderRule
from ..scoring.calibration import (
    DEFAULT_SAMPLES_PER_VOLUME,
    DEFAULT_Y_TOP,
    UNCALIBRATED,
    Calibration,
    fit_calibration,
    sample_raw_scores,
)
from ..scoring.sample_rules import CANDIDATE_RULES, SampleRule, candidate_scores
from ..scoring.standardise import Standardiser
from ..volumes import iter_volumes, list_volumes
from .detector import SAMPLE_COMBINE_RULES, ShellDetector, average_views, combine_members, combine_sample_scores
from ..config import validate
from .detector_file import DetectorSpec, build_spec, read_spec, write_spec
from .map_cache import raw_map_cache
from .loading import detector_from_spec, group_members, single_file_detector, store_shell_settings
from .tuning_search import TuningSet, best_candidate, pixel_search, sample_search, tuning_set

#: Test-time flip sets tried per map member: none, the left-right mirror (axis 0, the body's own symmetry), every axis
FLIP_CANDIDATES: tuple[tuple[int, ...], ...] = ((), (0,), (0, 1, 2))
#: ``weighted`` candidates tried by calibrate: one member emphasised this much over the others (10: the
#: others only break its ties and add where it is silent)
EMPHASIS = (3.0, 10.0)


# ============================================================================ the choices


def member_rule_candidates(det: ShellDetector) -> list[tuple[str, tuple[float, ...] | None]]:
    """The member-combine rules tried: mean, max, the file's own weights (when not all equal) and each
    member emphasised ``EMPHASIS`` x (each level) over the others. Ties go to the earlier candidate."""
    k = len(det.map_members)
    out: list[tuple[str, tuple[float, ...] | None]] = [("mean", None), ("max", None)]
    own = tuple(float(m.weight) for m in det.map_members)
    if len(set(own)) > 1:
        out.append(("weighted", own))
    for level in EMPHASIS:
        for i in range(k):
            w = tuple(level if j == i else 1.0 for j in range(k))
            if w != own:
                out.append(("weighted", w))
    return out


def describe_member_rule(rule: str, weights: tuple[float, ...] | None) -> str:
    return rule if weights is None else f"weighted({','.join(f'{w:g}' for w in weights)})"


def choose_member_rule(det: ShellDetector, tuning: TuningSet, candidates, final_for: Callable, progress: bool = False):
    """The member rule whose calibrated combined map has the best pooled pixel AP. Returns (candidate, APs)."""
    weights_of = [w if w is not None else [m.weight for m in det.map_members] for _, w in candidates]
    finals = [final_for(rule, w) for (rule, _), w in zip(candidates, weights_of)]

    def maps_of(data):
        maps = det.member_maps(det.member_raw(data))
        return [det.calibrated(combine_members([m.clone() for m in maps], rule, w), data, cal)
                for (rule, _), w, cal in zip(candidates, weights_of, finals)]

    best, aps = pixel_search(tuning, len(candidates), maps_of, "choosing the member rule", progress)
    return candidates[best], aps


def choose_border(det: ShellDetector, tuning: TuningSet, candidates: Sequence[BorderRule] = BORDER_CANDIDATES,
                  progress: bool = False) -> tuple[BorderRule, list[float]]:
    """The border rule with the best pooled pixel AP of the detector's final map (each volume scored once;
    the candidates only re-damp its map). Returns (rule, AP of every candidate)."""
    def maps_of(data):  # calibrated once, its foreground and each width's border mask found once
        scores = (det.calibration or UNCALIBRATED).apply_torch(det.score_raw(data))
        fg, masks = det.foreground(data), {}
        return [det.finish(scores, data, rule, fg, masks) for rule in candidates]

    best, aps = pixel_search(tuning, len(candidates), maps_of, "choosing the border rule", progress)
    return candidates[best], aps


def choose_flips(det: ShellDetector, tuning: TuningSet, candidates: Sequence[tuple[int, ...]] = FLIP_CANDIDATES,
                 progress: bool = False) -> tuple[list[tuple[int, ...]], dict[str, list[float]]]:
    """Each map member's test-time flips: the candidate with the best pooled pixel AP of its RAW map on the
    tuning set (a member's calibration is one monotone map for every volume, so its raw map ranks the pooled
    voxels as its calibrated map will; background masked as the detector masks it). Ties: fewer flips."""
    members = det.map_members
    hists = [[ScoreHistogram() for _ in candidates] for _ in members]
    scales: dict[int, float] = {}  # one scale per member (from its first tuning volume): one monotone map
    for p, vol in tuning.volumes("choosing test-time flips", progress):
        label = tuning.pixel_label(p, vol.data.shape)
        fg = det.foreground(vol.data).cpu().numpy() if det.background_threshold is not None else np.ones(vol.data.shape, bool)
        axes = sorted({a for c in candidates for a in c})
        for i, m in enumerate(members):
            views = det.mirror_maps(vol.data, m, axes)  # each view scored once, shared by every candidate
            for h, flips in zip(hists[i], candidates):
                raw = average_views(views[None], [views[a] for a in flips]).cpu().numpy()
                scales.setdefault(i, _scale_of(raw))
                h.add(np.where(fg, _to_unit(raw, scales[i]), 0.0), label)
    chosen, aps = [], {}
    for m, hs in zip(members, hists):
        values = [float(h.ap()) for h in hs]
        chosen.append(candidates[best_candidate(values)])
        aps[m.name] = [round(v, 6) for v in values]
    return chosen, aps


def _scale_of(raw: np.ndarray) -> float:
    finite = np.abs(np.asarray(raw, np.float64))[np.isfinite(raw)]
    return float(np.median(finite)) if finite.size and np.median(finite) > 0 else 1.0


def _to_unit(raw: np.ndarray, scale: float) -> np.ndarray:
    """A monotone map of raw scores into (0, 1) that keeps far more than float16's distinct levels apart
    (x / (1 + x) on a fixed scale; ranks are what pooled AP reads)."""
    x = np.nan_to_num(np.asarray(raw, np.float64), nan=np.inf)
    return np.clip(0.5 + 0.5 * np.tanh(np.log1p(np.maximum(x, 0) / scale)), 2.0**-14, 1.0)


def choose_sample_rule(scores: np.ndarray, labels: Sequence[int], rules: Sequence[SampleRule] = CANDIDATE_RULES
                       ) -> tuple[SampleRule, list[float]]:
    """The sample rule with the best sample AP; ``scores``: (n_volumes, n_rules) from :func:`candidate_scores`."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(rules):
        raise ValueError(f"scores must be (n_volumes, {len(rules)}), got {scores.shape}")
    best, aps = sample_search(scores, labels)
    return rules[best], aps


def choose_sample_combine(map_scores: Sequence[float], member_scores: Sequence[Sequence[float]], labels: Sequence[int]
                          ) -> tuple[str, list[float]]:
    """How the sample-level members' scores join the map-based sample score (:data:`SAMPLE_COMBINE_RULES`,
    ``map`` first: it wins ties). Returns (rule, AP of every rule)."""
    table = np.array([[combine_sample_scores(float(s), list(m), rule) for rule in SAMPLE_COMBINE_RULES]
                      for s, m in zip(map_scores, member_scores)])
    best, aps = sample_search(table, labels)
    return SAMPLE_COMBINE_RULES[best], aps


# ============================================================================ calibrate


def _volume_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        return [p] if p.is_file() else list_volumes(p)
    return [Path(s) for s in source]


def _joint_sample(mask: Any, n: int, seed: int) -> np.ndarray:
    """Flat indices of a seeded uniform subsample (at most ``n``) of the voxels where ``mask`` is true."""
    m = mask.detach().reshape(-1).cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask).reshape(-1)
    idx = np.flatnonzero(m)
    if idx.size > n:
        idx = np.sort(idx[np.random.default_rng(seed).choice(idx.size, size=n, replace=False)])
    return idx


def _normal_samples(det: ShellDetector, paths: Sequence[Path], seed: int, samples_per_volume: int, progress: bool
                    ) -> list[list[np.ndarray]]:
    """Per map member, the raw scores of the SAME seeded voxel sample of every normal volume."""
    members = det.map_members
    per_member: list[list[np.ndarray]] = [[] for _ in members]
    items = iter_volumes(paths, prefetch=1)
    for k, (p, vol) in enumerate(track(items, "calibrating", total=len(paths)) if progress else items):
        if isinstance(vol, MoodError):
            raise vol
        adapt_threads()
        raws = det.member_raw(vol.data)
        mask = det.foreground(vol.data) if det.background_threshold is not None else None
        vseed = seed * 1_000_003 + k
        if len(members) == 1:
            per_member[0].append(sample_raw_scores(raws[0], mask, samples_per_volume, vseed))
            continue
        idx = _joint_sample(mask if mask is not None else torch.ones_like(raws[0], dtype=torch.bool), samples_per_volume, vseed)
        it = torch.as_tensor(idx, device=raws[0].device)
        for j, r in enumerate(raws):
            per_member[j].append(r.reshape(-1).index_select(0, it).double().cpu().numpy())
    return per_member


def _fit_members(det: ShellDetector, per_member: list[list[np.ndarray]], tuning: TuningSet | None, y_top: float,
                 progress: bool, info: dict) -> None:
    """Several map members: each member's calibration, the member rule (on the tuning set) and the final calibration."""
    members = det.map_members
    for m, s in zip(members, per_member):
        m.calibration = fit_calibration(s, y_top=y_top)
    # the calibrated member values of the SAME sampled voxels: any member rule's combined normal sample
    cal = [torch.as_tensor(m.calibration.apply(np.concatenate(s)), dtype=torch.float64)  # type: ignore[union-attr]
           for m, s in zip(members, per_member)]
    finite = torch.stack([torch.isfinite(torch.as_tensor(np.concatenate(s))) for s in per_member]).all(0)
    cal = [c[finite] for c in cal]

    def final_for(rule: str, weights) -> Calibration:
        return fit_calibration(combine_members([c.clone() for c in cal], rule, weights).numpy(), y_top=y_top)

    chosen: tuple[str, tuple[float, ...] | None] = (det.member_combine, None)
    if tuning is not None:
        if tuning.pixel_dir is None:
            raise MoodError(f"{tuning.root}: choosing how members combine needs pixel labels (toy_label/pixel/)")
        candidates = member_rule_candidates(det)
        chosen, aps = choose_member_rule(det, tuning, candidates, final_for, progress)
        info["member_rule_ap"] = {describe_member_rule(*c): round(a, 6) for c, a in zip(candidates, aps)}
    det.member_combine = chosen[0]
    if chosen[1] is not None:
        for m, w in zip(members, chosen[1]):
            m.weight = float(w)
    det.calibration = final_for(det.member_combine, [m.weight for m in members])
    info["member_combine"] = describe_member_rule(det.member_combine, chosen[1])


def _tune_rules(det: ShellDetector, tuning: TuningSet, border_candidates: Sequence[BorderRule], progress: bool, info: dict) -> None:
    """On the tuning set: the border rule (with pixel labels), then the sample rule, then how sample-level members join."""
    if tuning.pixel_dir is not None:
        det.border, border_aps = choose_border(det, tuning, tuple(border_candidates), progress)
        info["border_ap"] = {r.describe(): round(a, 6) for r, a in zip(border_candidates, border_aps)}
    else:
        info["border_note"] = "no pixel labels on the tuning set: border rule left as it was"
    info["border"] = det.border.describe()
    rows, member_rows = [], []
    for _, vol in tuning.volumes("choosing the sample rule", progress):
        rows.append(candidate_scores(det.calibrated(det.score_raw(vol.data), vol.data), CANDIDATE_RULES))
        member_rows.append(det.member_sample_scores(vol.data))
    det.sample_rule, aps = choose_sample_rule(np.array(rows), tuning.labels, CANDIDATE_RULES)
    info["sample_rule_ap"] = {r.describe(): round(a, 6) for r, a in zip(CANDIDATE_RULES, aps)}
    if det.sample_members:
        map_scores = np.array(rows)[:, CANDIDATE_RULES.index(det.sample_rule)]
        det.sample_combine, combine_aps = choose_sample_combine(map_scores, member_rows, tuning.labels)
        info["sample_combine_ap"] = {c: round(a, 6) for c, a in zip(SAMPLE_COMBINE_RULES, combine_aps)}
        info["sample_combine"] = det.sample_combine
    info["validation_volumes"] = len(tuning.paths)
    info["tuned_on"] = tuning.fingerprint


def calibrate_detector(
    det: ShellDetector,
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    seed: int = 0,
    samples_per_volume: int = DEFAULT_SAMPLES_PER_VOLUME,
    y_top: float = DEFAULT_Y_TOP,
    progress: bool = True,
    border_candidates: Sequence[BorderRule] = BORDER_CANDIDATES,
    flip_candidates: Sequence[tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """Fit the calibrations on NORMAL volumes; with ``val_dir`` also choose the rules (module docstring).
    ``border_candidates=(OFF,)`` keeps the border rule off; ``flip_candidates`` (e.g. :data:`FLIP_CANDIDATES`)
    lets the tuning set choose each member's test-time flips first (None: keep the members' own).
    Returns a summary (stored in ``info``). The tuning set is scored by every choice in turn: a raw-map memo
    (:mod:`.map_cache`; the caller's, if one is open) scores each of its volumes once per member."""
    with raw_map_cache():
        return _calibrate(det, normal_volumes, val_dir, val_labels, seed, samples_per_volume, y_top, progress,
                          border_candidates, flip_candidates)


def _calibrate(det: ShellDetector, normal_volumes, val_dir, val_labels, seed: int, samples_per_volume: int, y_top: float,
               progress: bool, border_candidates: Sequence[BorderRule], flip_candidates) -> dict[str, Any]:
    start = time.perf_counter()
    if not det.map_members:
        raise MoodError("this detector has sample-level members only (each carries its own calibration); "
                        "nothing to calibrate: predict with it as it is")
    paths = _volume_paths(normal_volumes)
    tuning = tuning_set(val_dir, val_labels) if val_dir is not None else None
    flips_info = None
    if flip_candidates and tuning is not None and tuning.pixel_dir is not None:
        chosen, flips_info = choose_flips(det, tuning, tuple(flip_candidates), progress)
        for m, f in zip(det.map_members, chosen):
            m.flips = tuple(f)
    for m in det.map_members:
        m.calibration = None
    per_member = _normal_samples(det, paths, seed, samples_per_volume, progress)
    info: dict[str, Any] = {"normal_volumes": len(paths), "samples": int(sum(s.size for s in per_member[0])), "seed": seed,
                            "samples_per_volume": samples_per_volume}
    if flips_info is not None:
        info["flips_ap"] = {name: dict(zip(["+".join(map(str, f)) or "none" for f in flip_candidates], aps))
                            for name, aps in flips_info.items()}
        info["flips"] = {m.name: list(m.flips) for m in det.map_members}
    if len(per_member) == 1:
        det.calibration = fit_calibration(per_member[0], y_top=y_top)
    else:
        _fit_members(det, per_member, tuning, y_top, progress, info)
    info["raw_normal_max"] = float(det.calibration.xs[-1])
    if tuning is not None:
        _tune_rules(det, tuning, border_candidates, progress, info)
    info["sample_rule"] = det.sample_rule.describe()
    info["seconds"] = round(time.perf_counter() - start, 2)
    return info


def calibrate_model_file(path: str | os.PathLike, normal_volumes: Sequence[str | os.PathLike], *, seed: int = 0,
                         calibration_volumes: int = 16, progress: bool = True) -> dict[str, Any]:
    """Calibrate a LONE model file (e.g. ``baseline fit``'s histogram ``.npz``) on up to ``calibration_volumes``
    (seeded) of ``normal_volumes`` and store the shell settings in the file, so that ``predict --model FILE``
    scores calibrated. Inside a detector file these settings are not read: the detector's own are."""
    paths = [Path(p) for p in normal_volumes]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(paths), size=min(calibration_volumes, len(paths)), replace=False).tolist())
    det = single_file_detector(path, device="cpu")
    info = calibrate_detector(det, [paths[i] for i in chosen], seed=seed, progress=progress)
    settings = {"calibration": det.calibration.to_dict(), "sample_rule": det.sample_rule.to_dict(),  # type: ignore[union-attr]
                "background_threshold": det.background_threshold, "info": info}
    store_shell_settings(path, settings)
    return info


def spec_of(det: ShellDetector, spec: DetectorSpec, info: dict[str, Any] | None = None) -> DetectorSpec:
    """``spec`` with the fitted state of ``det`` (calibrations, member rule and weights, rules) written in."""
    data = spec.model_dump(mode="json")
    for md, m in zip(data["members"], det.members):
        md["calibration"] = m.calibration.to_dict() if m.calibration is not None else None
        md["weight"] = float(m.weight)
        md["flips"] = list(m.flips)
    data["member_combine"] = det.member_combine
    data["calibration"] = det.calibration.to_dict() if det.calibration is not None else None
    data["sample_rule"] = det.sample_rule.to_dict()
    data["sample_combine"] = det.sample_combine
    data["border"] = det.border.to_dict()
    data["standardise"] = det.standardiser.to_dict() if det.standardiser is not None else None
    if info is not None:
        data["info"] = {**data.get("info", {}), **info}
    return validate(DetectorSpec, data, "detector")


def calibrate_detector_file(path: str | os.PathLike, normal_volumes, *, device: str | None = None, batch_size: int | None = None,
                            **options: Any) -> dict[str, Any]:
    """Calibrate a detector file (:func:`calibrate_detector`'s options) and write the result into it once, atomically."""
    path = Path(path)
    spec = read_spec(path)
    det = detector_from_spec(spec, path.parent, device=device, batch_size=batch_size)
    info = calibrate_detector(det, normal_volumes, **options)
    write_spec(path, spec_of(det, spec, {"calibration": info}))
    return info


def fit_detector_file(path: str | os.PathLike, model_files: Sequence[str | os.PathLike], normal_volumes, *,
                      groups: Sequence[str] | None = None, combine: str = "mean", background_threshold: float | None = 0.0,
                      device: str | None = None, batch_size: int | None = None, standardiser: Standardiser | None = None,
                      **options: Any) -> ShellDetector:
    """Build the detector of ``model_files`` in memory (with ``standardiser``: every volume's intensities
    standardised first), calibrate it on ``normal_volumes`` (choosing the rules on ``val_dir``), write its
    file once, and return it ready for :func:`mood_dpa.inference.predict.predict_folder`."""
    path = Path(path)
    spec = build_spec(path, group_members(model_files, None, groups, check=False), combine=combine,
                      background_threshold=background_threshold, batch_size=batch_size)
    spec = spec.model_copy(update={"standardise": standardiser})
    det = detector_from_spec(spec, path.parent.resolve(), device=device, batch_size=batch_size)
    info = calibrate_detector(det, normal_volumes, **options)
    write_spec(path, spec_of(det, spec, {"calibration": info}))
    return det
