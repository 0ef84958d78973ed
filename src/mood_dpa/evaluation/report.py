"""The demo's report: one offline ``report.html`` with tables, precision-recall curves and overlays.

Everything is a static file (PNG + HTML, no network; the optional case browser in ``viewer/`` is a
script of the project's own, mood_dpa.viewer) so the folder can be zipped, mailed or opened on an
air-gapped workstation.
"""

from __future__ import annotations

import html
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import atomic_dir
from .evaluate import EvalResult
from .metrics import ScoreHistogram


@dataclass
class MethodResult:
    """One method's evaluation on the demo's validation set, at both levels."""

    name: str
    pixel: EvalResult
    sample: EvalResult
    pixel_hist: ScoreHistogram | None = None
    sample_scores: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    note: str = ""
    #: evaluation kinds whose family the method synthesised in training (marked "seen" in the tables)
    seen_kinds: frozenset[str] = frozenset()


@dataclass
class Figure:
    """A picture to show in the report: a PNG that is copied in, with a caption."""

    path: Path
    caption: str


@dataclass
class Report:
    title: str
    methods: list[MethodResult]
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: the same detectors on a second test set (the demo's new scanner), shown as its own tables
    shifted: list[MethodResult] = field(default_factory=list)
    shifted_title: str = "New scanner"


def pr_curve_from_histogram(hist: ScoreHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct float16 threshold, from the highest score down."""
    pos, neg = hist.pos[::-1], hist.neg[::-1]
    used = (pos + neg) > 0
    tp, fp = np.cumsum(pos)[used], np.cumsum(neg)[used]
    total = max(int(hist.pos.sum()), 1)
    return tp / np.maximum(tp + fp, 1), tp / total


def pr_curve_from_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score, from the highest down (ties grouped)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return tp / np.maximum(tp + fp, 1), tp / max(int(y.sum()), 1)


def _plot_pr(methods: Sequence[MethodResult], level: str, path: Path) -> bool:
    import matplotlib  # heavy: matplotlib only for the curves

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use

    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    drawn = False
    for m in methods:
        if level == "pixel" and m.pixel_hist is not None and m.pixel_hist.positives:
            prec, rec = pr_curve_from_histogram(m.pixel_hist)
            ap = m.pixel.ap
        elif level == "sample" and m.sample_scores is not None and np.any(m.sample_labels):
            prec, rec = pr_curve_from_scores(m.sample_scores, m.sample_labels)
            ap = m.sample.ap
        else:
            continue
        ax.step(np.r_[0, rec], np.r_[prec[0], prec], where="pre", label=f"{m.name} (AP {ap:.3f})")
        drawn = True
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{level} level")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return drawn


def _fmt(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _pixel_headline(r: EvalResult) -> dict:
    """The pixel row's overall numbers: the local kinds pooled with the normal cases when the set also
    holds global kinds (whose labels are the whole foreground), else every case, as MOOD pools them."""
    if "global" in r.per_scope and "local" in r.per_scope:
        return r.per_scope["local"]
    return {"ap": r.ap, "roc_auc": r.roc_auc, "best_dice": r.best_dice, "hit_rate": r.hit_rate,
            "cases": r.cases, "positives": r.positives, "negatives": r.negatives}


def _columns(methods: Sequence[MethodResult], level: str) -> tuple[list[tuple[str, object]], list[str]]:
    """(header, getter) pairs of a level's table, and the local kinds it lists."""
    results = [getattr(m, level) for m in methods]
    kinds = sorted({k for r in results for k, m in r.per_kind.items() if level == "sample" or m.get("scope", "local") == "local"})
    if level == "pixel":
        cols = [("AP", lambda r: _pixel_headline(r)["ap"])]
        if any("unseen" in r.per_group for r in results):
            cols.append(("AP unseen kinds", lambda r: r.per_group.get("unseen", {}).get("ap", np.nan)))
        cols += [("ROC-AUC", lambda r: _pixel_headline(r)["roc_auc"]),
                ("best Dice", lambda r: _pixel_headline(r).get("best_dice", np.nan)),
                ("hit rate", lambda r: _pixel_headline(r).get("hit_rate", np.nan))]
    else:
        cols = [("AP", lambda r: r.ap), ("ROC-AUC", lambda r: r.roc_auc)]
        scopes = [s for s in ("local", "global") if any(s in r.per_scope for r in results)]
        if len(scopes) > 1:
            for s in scopes:
                cols += [(f"AP {s}", lambda r, s=s: r.per_scope.get(s, {}).get("ap", np.nan)),
                         (f"ROC-AUC {s}", lambda r, s=s: r.per_scope.get(s, {}).get("roc_auc", np.nan))]
    cols += [(f"AP {k}", lambda r, k=k: r.per_kind.get(k, {}).get("ap", np.nan)) for k in kinds]
    return cols, kinds


def _html_table(methods: Sequence[MethodResult], level: str, cols: list[tuple[str, object]]) -> str:
    """One row per method, the best value of every column in bold."""
    grid = [[float(get(getattr(m, level))) if get(getattr(m, level)) is not None else np.nan for _, get in cols] for m in methods]
    grid = np.asarray(grid, np.float64).reshape(len(methods), len(cols))
    best = np.where(np.isfinite(grid), grid, -np.inf).max(axis=0) if len(methods) else []
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in cols)
    rows = []
    for i, m in enumerate(methods):
        cells = []
        for j in range(len(cols)):
            v = grid[i, j]
            strong = np.isfinite(v) and v == best[j]
            seen = any(cols[j][0].endswith(f" {k}") for k in m.seen_kinds)
            mark = "<sup title='seen: the method synthesised this family in training'>seen</sup>" if seen else ""
            cells.append(f"<td>{'<b>' if strong else ''}{_fmt(v)}{'</b>' if strong else ''}{mark}</td>")
        rows.append(f"<tr><th>{html.escape(m.name)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _table(methods: Sequence[MethodResult], level: str) -> str:
    cols, kinds = _columns(methods, level)
    ref = getattr(methods[0], level)
    head = _pixel_headline(ref) if level == "pixel" else {"cases": ref.cases, "positives": ref.positives, "negatives": ref.negatives}
    n_pos = int(head["positives"])
    chance = n_pos / max(n_pos + int(head.get("negatives", ref.negatives)), 1)
    parts = [_html_table(methods, level, cols)]
    note = (f"{head['cases']} cases, {n_pos:,} positive {'voxels' if level == 'pixel' else 'cases'}: "
            + f"a detector that guesses has AP {chance:.4f} (the positive rate) and ROC-AUC 0.5. "
            + "Per-kind AP: that kind's anomalous cases pooled with all normal cases. Best in bold. "
            + "<sup>seen</sup>: a kind whose family the method synthesised in training (the others are unseen; "
            + "'AP unseen kinds' pools only those with all normal cases).")
    if level == "pixel":
        note += (" Best Dice: the best Dice of one threshold over the pooled voxels; hit rate: the share of anomalous"
                 " cases whose hottest connected region (voxels at or above half the case maximum, at most its top"
                 " 0.1 %) touches the anomaly.")
        if "global" in ref.per_scope:
            note += " The set also holds global kinds (the whole volume changed): this table is on the local kinds only."
        loc = [(f"{what} {k}", lambda r, k=k, key=key: r.per_kind.get(k, {}).get(key, np.nan))
               for k in kinds for what, key in (("Dice", "best_dice"), ("hit", "hit_rate"))]
        if loc and any("best_dice" in getattr(m, level).per_kind.get(k, {}) for m in methods for k in kinds):
            parts.append("<p class=small>Localisation per kind (best Dice, hit rate):</p>" + _html_table(methods, level, loc))
    elif len([s for s in ("local", "global") if s in ref.per_scope]) > 1:
        note += (" AP local / global: the local kinds (one region changed) or the global kinds (the whole volume"
                 " changed), each pooled with all normal cases.")
    parts.insert(1, f"<p class=small>{note}</p>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;display:block;overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child{text-align:left}.small{color:#666;font-size:.9em}figure{display:inline-block;margin:.5em;vertical-align:top}
figure img{max-width:520px}figcaption{font-size:.9em;color:#444;max-width:520px}
a.button{display:inline-block;background:#1f6feb;color:#fff;padding:.3em .9em;border-radius:4px;text-decoration:none;margin-right:.4em}"""


def write_report(report: Report, out_dir: str | os.PathLike, extra: Callable[[Path], str] | None = None) -> Path:
    """Write ``out_dir/report.html`` with its PNGs; the folder is replaced whole on success.

    ``extra(folder)`` may write its own files into the report folder being built and returns HTML placed
    after the facts (the demo's case browser, mood_dpa.viewer)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(report.title)}</title><style>{CSS}</style>",
                 f"<h1>{html.escape(report.title)}</h1>"]
        if report.facts:
            parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
                                             for k, v in report.facts.items()) + "</table>")
        if extra is not None:
            parts.append(extra(tmp))
        for level, what in [("pixel", "Pixel level (voxel scores, pooled AP as in MOOD 2020-2022)"),
                            ("sample", "Sample level (one score per volume)")]:
            parts.append(f"<h2>{what}</h2>" + _table(report.methods, level))
            if _plot_pr(report.methods, level, tmp / f"pr_{level}.png"):
                scope = (" over every case of the set (the legend's AP pools all kinds; where the set holds global kinds, "
                         "their whole changed foreground counts, so it differs from the table's local-kind AP)"
                         if level == "pixel" else "")
                parts.append(f"<figure><img src='pr_{level}.png' alt='precision-recall, {level}'><figcaption>Precision-recall, "
                             f"{level} level{scope}.</figcaption></figure>")
        if report.shifted:
            parts.append(f"<h2>{html.escape(report.shifted_title)}</h2><p>The same detectors, on a test set from a scanner "
                         "and population no training or tuning step saw.</p>")
            parts += [f"<h3>{level.capitalize()} level</h3>" + _table(report.shifted, level) for level in ("pixel", "sample")]
        notes = [m for m in report.methods if m.note]
        if notes:
            parts.append("<h2>Methods</h2><ul>" + "".join(f"<li><b>{html.escape(m.name)}</b>: {html.escape(m.note)}</li>" for m in notes) + "</ul>")
        if report.figures:
            parts.append("<h2>Score maps</h2>")
            for i, fig in enumerate(report.figures):
                name = f"fig_{i:02d}.png"
                shutil.copyfile(fig.path, tmp / name)
                parts.append(f"<figure><img src='{name}' alt='{html.escape(fig.caption)}'><figcaption>{html.escape(fig.caption)}</figcaption></figure>")
        if report.timings:
            parts.append("<h2>Time per step</h2><table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v:.1f} s</td></tr>"
                                                                    for k, v in report.timings.items()) + "</table>")
        (tmp / "report.html").write_text("\n".join(parts) + "\n")
    return out_dir / "report.html"
