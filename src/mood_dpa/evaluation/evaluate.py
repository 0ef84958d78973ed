"""The MOOD evaluator: pairing, reading, pooled exact AP / ROC-AUC, per-kind breakdown, bootstrap, JSON.

Rules (MOOD_PROTOCOL.md, followed to the letter):

- Pairing is driven by the label folder: for each label file, the prediction with the same name.
- Labels must be 0 or 1 (pixel and sample; NaN too is refused with an error naming the file): MOOD's
  labels are, and rounding anything else (an image folder given as labels) gives a plausible, wrong AP.
- A prediction folder with no prediction for any case is an error; labels of one class only are warned about.
- Pixel level: label read as {0, 1}; prediction read as float16 and clipped to [0, 1];
  a missing prediction, or one whose shape differs from the label, counts as all zeros (a warning
  names the case). All voxels of all cases are pooled into ONE average precision.
- Sample level: label = int(first line); prediction = float(first line) clipped to [0, 1]; missing or
  unparsable = 0.0 (with a warning). AP over cases.
- Localisation (pixel level, beside AP): ``best_dice`` = the best Dice of one global threshold over
  the pooled voxels (same float16 histogram as AP), and ``hit_rate`` = the share of anomalous cases
  whose hottest connected region overlaps the anomaly (``metrics.case_hit`` defines it).
- Scopes: with a manifest, every kind belongs to ``scope`` local (a region changed) or global (the
  whole volume changed); ``per_scope`` gives each scope's cases pooled with all normal cases, so the
  sample level of local and global anomalies can be read apart.
- A NaN prediction is an error naming the file.
- Provenance: when the prediction folder holds ``.mood-dpa-predict.json`` (written by ``predict``), the
  result names the detector (``detector`` in the JSON) and a warning says so when the label set
  overlaps the set the detector was tuned on (:func:`mood_dpa.data.provenance.tuning_warning`).

The pooled pixel AP is exact and streaming: each case adds a count histogram over the 15,361 float16
codes in [0, 1] (``metrics``), so memory does not grow with the number of voxels; the per-case
histograms are kept (compactly) so that per-kind metrics and case bootstraps are cheap.

Python entry point::

    result = evaluate_folder(pred_dir, labels_dir, "pixel", manifest="OUT/manifest.csv", bootstrap=200, seed=0)
    result.ap, result.roc_auc, result.per_kind["uniform"]["ap"], result.to_dict()
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import write_text
from ..errors import MoodError
from ..data.mood import (
    NORMAL_KIND,
    find_manifest,
    TASKS,
    case_name,
    list_label_files,
    read_label_volume,
    read_manifest,
    read_prediction_volume,
    read_sample_label,
    read_sample_prediction,
    same_grid,
    resolve_label_dir,
)
from ..data.provenance import tuning_warning
from ..data.synth.layout import kind_scope
from ..progress import track
from .metrics import (
    N_CODES,
    ScoreHistogram,
    average_precision,
    case_hit,
    histogram_ap,
    histogram_best_dice,
    histogram_roc_auc,
    roc_auc,
)



@dataclass
class EvalResult:
    """Everything the evaluator found; ``to_dict()`` is the ``--json`` content."""

    task: str
    ap: float
    roc_auc: float
    cases: int
    positives: int
    negatives: int
    per_kind: dict = field(default_factory=dict)
    bootstrap: dict | None = None
    # pixel level only (NaN / None at sample level): localisation beside AP
    best_dice: float = float("nan")
    best_dice_threshold: float = float("nan")
    hit_rate: float = float("nan")
    hit_cases: int = 0
    per_scope: dict = field(default_factory=dict)
    per_group: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    case_names: list = field(default_factory=list)
    #: the prediction record's entry for this task (which detector, tuned on what), None without one
    detector: dict | None = None
    #: the warning about evaluating on the detector's tuning set, None when there is none
    tuning_warning: str | None = None
    # the raw material of curves (not in the JSON): pooled pixel histogram, or sample scores and labels
    histogram: ScoreHistogram | None = None
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None

    def to_dict(self) -> dict:
        return _jsonable(
            {
                "task": self.task,
                "ap": self.ap,
                "roc_auc": self.roc_auc,
                "cases": self.cases,
                "positives": self.positives,
                "negatives": self.negatives,
                "best_dice": self.best_dice,
                "best_dice_threshold": self.best_dice_threshold,
                "hit_rate": self.hit_rate,
                "hit_cases": self.hit_cases,
                "per_kind": self.per_kind,
                "per_scope": self.per_scope,
                "per_group": self.per_group,
                "bootstrap": self.bootstrap or {},
                "missing": self.missing,
                "warnings": self.warnings,
                "detector": self.detector,
                "tuning_warning": self.tuning_warning,
            }
        )


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def pixel_case_histogram(
    pred_path: Path, label_path: Path, warn: Callable[[str], None]
) -> tuple[ScoreHistogram, bool, bool | None]:
    """(histogram of one case, prediction was missing / unusable, hit: see ``metrics.case_hit``)."""
    label, shape = read_label_volume(label_path)
    hist = ScoreHistogram()
    pred = None
    if not pred_path.is_file():
        warn(f"{case_name(label_path.name)}: no prediction {pred_path}; counted as all zeros")
    else:
        try:
            pred = read_prediction_volume(pred_path)
        except Exception as exc:  # noqa: BLE001 - an unreadable prediction is scored like a missing one
            warn(f"{case_name(label_path.name)}: cannot read prediction {pred_path} ({type(exc).__name__}); counted as all zeros")
            pred = None
        if pred is not None and pred.shape != shape:
            warn(f"{case_name(label_path.name)}: prediction shape {pred.shape} differs from label shape {shape}; counted as all zeros")
            pred = None
        if pred is not None and not same_grid(pred_path, label_path):
            warn(f"{case_name(label_path.name)}: the prediction's affine differs from the label's (the MOOD evaluator "
                 "compares voxel by voxel and does not check): are they of the same scan and grid?")
    if pred is None:
        n_pos = int(np.count_nonzero(label))
        hist.pos[0] = n_pos
        hist.neg[0] = label.size - n_pos
        return hist, True, (False if n_pos else None)
    # nibabel hands both arrays over in Fortran order: flatten them the same way without copying
    order = "F" if pred.flags.f_contiguous and label.flags.f_contiguous else "C"
    hist.add(pred.ravel(order=order), label.ravel(order=order), what=str(pred_path))
    return hist, False, case_hit(pred, label)


# ---------------------------------------------------------------- the evaluator


def _kind_map(manifest: str | os.PathLike | None, names: Sequence[str], warn) -> dict[str, str]:
    if manifest is None:
        return {}
    rows = read_manifest(manifest)
    kinds = {case_name(r["case"]): r["kind"] for r in rows}
    unknown = [n for n in names if n not in kinds]
    if unknown:
        warn(f"{len(unknown)} cases are not in the manifest (e.g. {unknown[0]}); left out of the per-kind table")
    return kinds


SCOPES = ("local", "global")


def _scope_map(manifest) -> dict[str, str]:
    """kind -> scope from the manifest's ``scope`` column (absent in manifests older than it: {})."""
    return {r["kind"]: r["scope"] for r in read_manifest(manifest) if r.get("scope") in SCOPES}


def _hit_rate(hits: np.ndarray) -> tuple[float, int]:
    """(share of hits, cases counted) over the cases with an anomaly (NaN entries are normal cases)."""
    hits = hits[np.isfinite(hits)]
    return (float(hits.mean()) if hits.size else float("nan")), int(hits.size)


def _percentiles(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "ci95": [float("nan"), float("nan")], "valid": 0}
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {"mean": float(values.mean()), "std": float(values.std()), "ci95": [float(lo), float(hi)], "valid": int(values.size)}


#: Most case resamples a bootstrap takes (a 95 % interval is stable long before; more is a typo).
MAX_BOOTSTRAP = 100_000


def bootstrap_pixel_ap(pos: np.ndarray, neg: np.ndarray, n: int, seed: int, block: int = 64, progress: bool = False) -> dict:
    """Pooled AP over ``n`` case resamples (with replacement) from per-case histograms (cases x bins)."""
    n_cases = pos.shape[0]
    rng = np.random.default_rng(seed)
    # Bins that no case uses add nothing to AP: drop them, the matrices get small.
    used = np.flatnonzero((pos.sum(axis=0) + neg.sum(axis=0)) > 0)
    P = pos[:, used].astype(np.float64)
    N = neg[:, used].astype(np.float64)
    aps = np.empty(n)
    starts = range(0, n, block)
    for start in track(starts, "bootstrap") if progress else starts:
        b = min(block, n - start)
        idx = rng.integers(0, n_cases, size=(b, n_cases))
        weights = np.zeros((b, n_cases))
        np.add.at(weights, (np.repeat(np.arange(b), n_cases), idx.ravel()), 1.0)
        aps[start : start + b] = histogram_ap(weights @ P, weights @ N)
    return {"n": int(n), "seed": int(seed), **_percentiles(aps)}


def bootstrap_sample_ap(scores: np.ndarray, labels: np.ndarray, n: int, seed: int, progress: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    aps = np.empty(n)
    for i in track(range(n), "bootstrap") if progress else range(n):
        idx = rng.integers(0, scores.size, size=scores.size)
        aps[i] = average_precision(scores[idx], labels[idx]) if labels[idx].any() else np.nan
    return {"n": int(n), "seed": int(seed), **_percentiles(aps)}


def evaluate_folder(
    pred_dir: str | os.PathLike,
    labels: str | os.PathLike,
    task: str,
    *,
    manifest: str | os.PathLike | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    on_warning: Callable[[str], None] | None = _stderr_warning,
    progress: bool = True,
    groups: dict[str, Sequence[str]] | None = None,
) -> EvalResult:
    """Score the predictions in ``pred_dir`` against ``labels`` exactly as the MOOD challenge does.

    ``labels`` may be the task folder (``toy_label/pixel``), ``toy_label`` or the set's root.
    ``manifest`` (``manifest.csv`` of :func:`make_synthetic_set`) adds per-kind metrics: each kind's
    cases pooled with all normal cases. ``bootstrap`` > 0 adds the mean and 95 % interval of AP over
    that many case resamples drawn with ``seed``. Warnings (missing / mismatched predictions) go to
    ``on_warning`` (default: stderr) and are kept in ``result.warnings``. ``groups`` (name -> kinds; needs
    the manifest) adds ``per_group``: those kinds' cases pooled with all normal cases, e.g. the kinds a
    method never saw in training (the demo's "unseen" headline).
    """
    if task not in TASKS:
        raise MoodError(f"--task {task!r}: expected pixel or sample")
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise MoodError(f"--bootstrap {bootstrap}: expected 0 (off) to {MAX_BOOTSTRAP} case resamples")
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise MoodError(f"{pred_dir}: no such prediction folder")
    label_dir = resolve_label_dir(labels, task)
    files = list_label_files(label_dir, task)
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        if on_warning is not None:
            on_warning(msg)

    names = [case_name(p.name) for p in files]
    if not any((pred_dir / p.name).is_file() for p in files):
        raise MoodError(
            f"{pred_dir}: none of the {len(files)} cases of {label_dir} has a prediction here "
            f"(expected files named like {files[0].name}); wrong folder or task?"
        )
    leak, provenance = tuning_warning(pred_dir, task, names, find_manifest(labels, manifest))
    if leak is not None:
        warn(leak)
    missing: list[str] = []
    items = track(files, f"evaluating {task}") if progress else files
    if task == "pixel":
        pos = np.zeros((len(files), N_CODES), np.int64)
        neg = np.zeros((len(files), N_CODES), np.int64)
        hits = np.full(len(files), np.nan)  # 1 hit, 0 miss, NaN: no anomaly in the case
        for i, lab_path in enumerate(items):
            hist, miss, hit = pixel_case_histogram(pred_dir / lab_path.name, lab_path, warn)
            pos[i], neg[i] = hist.pos, hist.neg
            if hit is not None:
                hits[i] = float(hit)
            if miss:
                missing.append(names[i])
        total = ScoreHistogram(pos.sum(axis=0), neg.sum(axis=0))
        ap, auc = total.ap(), total.roc_auc()
        n_pos, n_neg = total.positives, total.negatives

        def metrics_of(index: np.ndarray) -> dict:
            h_pos, h_neg = pos[index].sum(axis=0), neg[index].sum(axis=0)
            dice, threshold = histogram_best_dice(h_pos, h_neg)
            rate, n_hit = _hit_rate(hits[index])
            return {"ap": float(histogram_ap(h_pos, h_neg)), "roc_auc": float(histogram_roc_auc(h_pos, h_neg)),
                    "cases": int(index.size), "positives": int(h_pos.sum()), "negatives": int(h_neg.sum()), "best_dice": dice,
                    "best_dice_threshold": threshold, "hit_rate": rate, "hit_cases": n_hit}

        def boot() -> dict:
            return bootstrap_pixel_ap(pos, neg, bootstrap, seed, progress=progress)
    else:
        scores = np.zeros(len(files))
        labs = np.zeros(len(files), dtype=bool)
        for i, lab_path in enumerate(items):
            labs[i] = bool(read_sample_label(lab_path))
            scores[i], miss = read_sample_prediction(pred_dir / lab_path.name, warn, names[i])
            if miss:
                missing.append(names[i])
        ap, auc = average_precision(scores, labs), roc_auc(scores, labs)
        n_pos, n_neg = int(labs.sum()), int((~labs).sum())

        def metrics_of(index: np.ndarray) -> dict:
            return {"ap": average_precision(scores[index], labs[index]), "roc_auc": roc_auc(scores[index], labs[index]),
                    "cases": int(index.size), "positives": int(labs[index].sum()), "negatives": int((~labs[index]).sum())}

        def boot() -> dict:
            return bootstrap_sample_ap(scores, labs, bootstrap, seed, progress=progress)

    if len(missing) == len(files):
        raise MoodError(f"{pred_dir}: no usable prediction for any of the {len(files)} cases (see the warnings above)")
    if n_pos == 0:
        warn("no positive label anywhere: AP is undefined")
    elif n_neg == 0:
        what = "voxel" if task == "pixel" else "case"
        warn(f"every {what} is labelled positive (one class only): AP is 1 by construction and says nothing")
    per_kind: dict[str, dict] = {}
    per_scope: dict[str, dict] = {}
    per_group: dict[str, dict] = {}
    kinds, scopes = _kind_map(manifest, names, warn), {}
    if kinds:
        scopes = _scope_map(manifest)
        case_kinds = np.array([kinds.get(n, "") for n in names])
        normal = np.flatnonzero(case_kinds == NORMAL_KIND)
        found = set(case_kinds) - {NORMAL_KIND, ""}
        for kind in sorted(found, key=lambda k: (scopes.get(k, kind_scope(k)) != "local", k)):  # local kinds first
            index = np.concatenate([np.flatnonzero(case_kinds == kind), normal])
            per_kind[kind] = {**metrics_of(index), "scope": scopes.get(kind, kind_scope(kind))}
        for scope in SCOPES:
            members = [k for k, m in per_kind.items() if m["scope"] == scope]
            if members:
                index = np.concatenate([np.flatnonzero(np.isin(case_kinds, members)), normal])
                per_scope[scope] = {**metrics_of(index), "kinds": members}
        for group, members in (groups or {}).items():
            chosen = sorted(set(members) & found)
            index = np.concatenate([np.flatnonzero(np.isin(case_kinds, chosen)), normal])
            per_group[group] = {**metrics_of(index), "kinds": chosen}
    localisation = {}
    if task == "pixel":
        dice, threshold = histogram_best_dice(total.pos, total.neg)
        rate, n_hit = _hit_rate(hits)
        localisation = {"best_dice": dice, "best_dice_threshold": threshold, "hit_rate": rate, "hit_cases": n_hit}
    return EvalResult(
        task=task, ap=ap, roc_auc=auc, cases=len(files), positives=n_pos, negatives=n_neg, **localisation,
        per_kind=per_kind, per_scope=per_scope, per_group=per_group, bootstrap=boot() if bootstrap else None, missing=missing,
        warnings=warnings, case_names=names, detector=provenance, tuning_warning=leak, histogram=total if task == "pixel" else None,
        scores=scores if task == "sample" else None, labels=labs if task == "sample" else None,
    )


def write_json(result: EvalResult, path: str | os.PathLike) -> Path:
    """Write ``result.to_dict()`` atomically (NaN becomes null)."""
    return write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")


def result_table(result: EvalResult, title: str | None = None):
    """A small rich Table: overall, per-scope and per-kind AP / ROC-AUC (pixel level: best Dice and hit
    rate too), and the bootstrap interval."""
    from rich.table import Table  # start-up: rich only for the table

    def fmt(x) -> str:
        return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.4f}"

    pixel = result.task == "pixel"
    unit = "voxels" if pixel else "cases"
    table = Table(title=title or f"MOOD {result.task}-level evaluation")
    table.add_column("kind")
    table.add_column("cases", justify="right")
    table.add_column(f"positive {unit}", justify="right")
    table.add_column("AP", justify="right")
    table.add_column("ROC-AUC", justify="right")
    if pixel:
        table.add_column("best Dice", justify="right")
        table.add_column("hit rate", justify="right")

    def row(name: str, m: dict, **style) -> None:
        cells = [name, str(m["cases"]), str(m["positives"]), fmt(m["ap"]), fmt(m["roc_auc"])]
        if pixel:
            hit = "-" if not m.get("hit_cases") else f"{fmt(m['hit_rate'])} ({m['hit_cases']})"
            cells += [fmt(m.get("best_dice")), hit]
        table.add_row(*cells, **style)

    row("all", {"cases": result.cases, "positives": result.positives, "ap": result.ap, "roc_auc": result.roc_auc,
                "best_dice": result.best_dice, "hit_rate": result.hit_rate, "hit_cases": result.hit_cases}, style="bold")
    if len(result.per_scope) > 1:
        for scope, m in result.per_scope.items():
            row(f"{scope} kinds", m, style="italic")
    for kind, m in result.per_kind.items():
        row(kind if m.get("scope", "local") == "local" else f"{kind} (global)", m)
    if result.bootstrap:
        b = result.bootstrap
        table.caption = f"bootstrap ({b['n']} case resamples, seed {b['seed']}): AP {fmt(b['mean'])} [{fmt(b['ci95'][0])}, {fmt(b['ci95'][1])}]"
    return table
