"""Write the case browser: a folder that opens with ``file://`` (no server, no network) in a current browser.

Layout (every file is ours, the folder is replaced whole by :func:`write_viewer`)::

    index.html  viewer.css                the page (package data, mood_dpa/viewer/assets)
    render.js  viewer.js                  its script: drawing; state, loading, list and controls
    data/index.js                         the case list: names, kinds, per method sample score, AP, hit
    data/case_0000.js ...                 one file per case, loaded when the case is opened: the volume,
                                          the label and each method's score map (mood_dpa.viewer.encode)

Data comes in through ``<script src>`` files (``window.moodViewerIndex = {...}`` and
``moodViewerCase(i, {...})``), because browsers refuse ``fetch`` of ``file://`` URLs and taint canvases
drawn from ``file://`` images; only the opened case is read, so the first picture waits for the case
list and one case, not for the whole set.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import atomic_dir
from ..progress import track
from ..viz import slice_centre
from .cases import CaseFiles, Method, read_case
from .encode import (
    DEFAULT_MAX_SIZE,
    LOGIT_SPAN,
    block_reduce,
    display_factor,
    intensity_codes,
    pack,
    score_codes,
)

ASSETS = ("index.html", "viewer.css", "render.js", "viewer.js")
#: Version of the data files' layout (data/index.js, data/case_*.js), read by viewer.js.
FORMAT = 1


@dataclass
class ViewerSummary:
    """What was written: the page, the number of cases, and the bytes of the case files."""

    index: Path
    cases: int
    case_bytes: list[int] = field(default_factory=list)
    total_bytes: int = 0
    display_shapes: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def mb_per_case(self) -> float:
        return sum(self.case_bytes) / max(len(self.case_bytes), 1) / 1e6


def _clean(value):
    """JSON without NaN (null instead), numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _start_point(label: np.ndarray | None, scores: Sequence[np.ndarray | None], shape) -> list[int]:
    """Where a case opens: the anomaly's centre, else the hottest voxel of the first map, else the middle."""
    if label is not None and label.any():
        return list(slice_centre(shape, label))
    for s in scores:
        if s is not None and s.max() > 0:
            return [int(i) for i in np.unravel_index(int(np.argmax(s)), s.shape)]
    return [int(n) // 2 for n in shape]


def _case_payload(arrays, factor: int) -> tuple[dict, tuple[int, ...]]:
    vol = block_reduce(arrays.volume, factor, "mean")
    codes, lo, hi = intensity_codes(vol)
    label = None if arrays.label is None else pack(block_reduce(arrays.label.astype(np.uint8), factor, "max"))
    maps = [None if s is None else pack(block_reduce(score_codes(s), factor, "max")) for s in arrays.scores]
    return {"shape": list(codes.shape), "volume": pack(codes), "range": [lo, hi], "label": label, "scores": maps}, codes.shape


def write_viewer_files(folder: str | os.PathLike, cases: Sequence[CaseFiles], methods: Sequence[Method], *,
                       title: str = "mood-dpa case browser", max_size: int = DEFAULT_MAX_SIZE,
                       warn: Callable[[str], None] = lambda msg: None, progress: bool = False,
                       note: str = "") -> ViewerSummary:
    """Write the browser's files into ``folder`` (created; for a folder being built, e.g. inside the demo's report)."""
    folder = Path(folder)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    assets = resources.files("mood_dpa.viewer") / "assets"
    for name in ASSETS:
        with resources.as_file(assets / name) as src:
            shutil.copyfile(src, folder / name)
    summary = ViewerSummary(folder / "index.html", len(cases))
    entries = []
    for i, case in enumerate(track(cases, "case browser", total=len(cases)) if progress else cases):
        arrays = read_case(case, methods, warn)
        factor = display_factor(arrays.volume.shape, max_size)
        payload, shape = _case_payload(arrays, factor)
        start = _start_point(arrays.label, arrays.scores, arrays.volume.shape)
        start = [min(int(c) // factor, n - 1) for c, n in zip(start, shape)]
        file = f"case_{i:04d}.js"
        text = f"moodViewerCase({i},{json.dumps(_clean(payload), separators=(',', ':'))});\n"
        (data / file).write_text(text)
        summary.case_bytes.append(len(text))
        summary.display_shapes.append(tuple(shape))
        entries.append({**arrays.facts, "file": f"data/{file}", "factor": factor, "display": list(shape), "start": start})
    index = {"format": FORMAT, "title": title, "note": note, "methods": [m.name for m in methods],
             "scale": {"kind": "logit10", "span": LOGIT_SPAN, "floor_code": 0}, "cases": entries}
    (data / "index.js").write_text("window.moodViewerIndex = " + json.dumps(_clean(index), separators=(",", ":")) + ";\n")
    summary.total_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return summary


def write_viewer(out: str | os.PathLike, cases: Sequence[CaseFiles], methods: Sequence[Method], **options) -> ViewerSummary:
    """Write the browser into ``out`` as one step: the folder appears complete or not at all (mood_dpa.atomic.atomic_dir).

    The caller has checked ``out`` with :func:`mood_dpa.outputs.prepare_output_dir` (``replace=True``).
    """
    out = Path(out)
    with atomic_dir(out) as tmp:
        summary = write_viewer_files(tmp, cases, methods, **options)
    summary.index = out / "index.html"
    return summary


def report_section(summary: ViewerSummary, href: str = "viewer/index.html") -> str:
    """The report's paragraph that links the browser (sizes included, so a reader knows what opening it costs)."""
    shapes = sorted({"x".join(map(str, s)) for s in summary.display_shapes})
    return (f"<h2>Case browser</h2><p><a class=button href='{html.escape(href)}'>Open the case browser</a> "
            f"Every test case ({summary.cases}) on three planes with each method's score map over it (threshold and "
            "opacity sliders), the true anomaly's outline, and a case list to sort by kind, sample score and per-case "
            "AP, to jump to the worst misses. It opens from this folder, offline. Display grid "
            f"{', '.join(shapes)}; {summary.mb_per_case:.2f} MB per case, {summary.total_bytes / 1e6:.1f} MB in all.</p>")
