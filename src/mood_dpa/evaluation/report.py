"""The demo's report: one offline ``report.html`` with tables, precision-recall curves and overlays.

Everything is a static file (PNG + HTML, no scripts, no network) so the folder can be
zipped, mailed or opened on an air-gapped workstation.
"""

from __future__ import annotations

import html
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def _table(methods: Sequence[MethodResult], level: str) -> str:
    kinds = sorted({k for m in methods for k in getattr(m, level).per_kind})
    best = {}
    for col in ["ap", "roc_auc", *kinds]:
        vals = []
        for m in methods:
            r = getattr(m, level)
            v = getattr(r, col) if col in ("ap", "roc_auc") else r.per_kind.get(col, {}).get("ap", np.nan)
            vals.append(v if np.isfinite(v) else -np.inf)
        best[col] = max(vals)
    head = "".join(f"<th>AP {html.escape(k)}</th>" for k in kinds)
    ref = getattr(methods[0], level)
    chance = ref.positives / max(ref.positives + ref.negatives, 1)
    rows = []
    for m in methods:
        r = getattr(m, level)
        cells = []
        for col in ["ap", "roc_auc", *kinds]:
            v = getattr(r, col) if col in ("ap", "roc_auc") else r.per_kind.get(col, {}).get("ap", np.nan)
            strong = np.isfinite(v) and v == best[col]
            cells.append(f"<td>{'<b>' if strong else ''}{_fmt(v)}{'</b>' if strong else ''}</td>")
        rows.append(f"<tr><th>{html.escape(m.name)}</th>{''.join(cells)}</tr>")
    return (
        f"<table><tr><th>method</th><th>AP</th><th>ROC-AUC</th>{head}</tr>{''.join(rows)}</table>"
        f"<p class=small>{ref.cases} cases, {ref.positives:,} positive {'voxels' if level == 'pixel' else 'cases'}: "
        f"a detector that guesses has AP {chance:.4f} (the positive rate) and ROC-AUC 0.5. "
        f"Per-kind AP: that kind's anomalous cases pooled with all normal cases. Best in bold.</p>"
    )


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child{text-align:left}.small{color:#666;font-size:.9em}figure{display:inline-block;margin:.5em;vertical-align:top}
figure img{max-width:520px}figcaption{font-size:.9em;color:#444;max-width:520px}"""


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/report.html`` with its PNGs; the folder is replaced whole on success."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(report.title)}</title><style>{CSS}</style>",
                 f"<h1>{html.escape(report.title)}</h1>"]
        if report.facts:
            parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
                                             for k, v in report.facts.items()) + "</table>")
        for level, what in [("pixel", "Pixel level (voxel scores, pooled AP as in MOOD 2020-2022)"),
                            ("sample", "Sample level (one score per volume)")]:
            parts.append(f"<h2>{what}</h2>" + _table(report.methods, level))
            if _plot_pr(report.methods, level, tmp / f"pr_{level}.png"):
                parts.append(f"<figure><img src='pr_{level}.png' alt='precision-recall, {level}'><figcaption>Precision-recall, {level} level.</figcaption></figure>")
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
