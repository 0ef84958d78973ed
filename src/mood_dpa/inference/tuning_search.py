"""The tuning set (a labelled synthetic-anomaly set in the MOOD toy layout) and the one candidate search
every tuning choice runs: score each tuning volume, accumulate per candidate, take the best exact AP."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..data.mood import read_label_volume, read_sample_label
from ..data.provenance import manifest_sources
from ..errors import MoodError
from ..evaluation.metrics import ScoreHistogram, average_precision
from ..progress import track
from ..runtime import adapt_threads
from ..volumes import iter_volumes, list_volumes


# ============================================================================ the tuning set


@dataclass
class TuningSet:
    """A labelled set in the MOOD toy layout: volumes, their sample labels, and the pixel-label folder."""

    root: Path
    paths: list[Path]
    labels: list[int]
    pixel_dir: Path | None
    fingerprint: dict = field(default_factory=dict)

    def pixel_label(self, path: Path, shape) -> np.ndarray:
        """The pixel label of one tuning volume, checked against the volume's shape."""
        if self.pixel_dir is None:
            raise MoodError(f"{self.root}: this choice needs pixel labels (toy_label/pixel/)")
        label_path = self.pixel_dir / path.name
        if not label_path.is_file():
            raise MoodError(f"{label_path}: missing pixel label for {path.name}")
        label, lshape = read_label_volume(label_path)
        if tuple(lshape) != tuple(shape):
            raise MoodError(f"{label_path}: label shape {lshape} differs from the volume's {tuple(shape)}")
        return label

    def volumes(self, what: str, progress: bool) -> Iterator[tuple[Path, Any]]:
        """(path, volume) of every tuning volume, read ahead in a thread; a bad file is an error."""
        items = iter_volumes(self.paths, prefetch=1)
        for p, vol in track(items, what, total=len(self.paths)) if progress else items:
            if isinstance(vol, MoodError):
                raise vol
            adapt_threads()
            yield p, vol


def tuning_set(val_dir: str | os.PathLike, labels_dir: str | os.PathLike | None = None) -> TuningSet:
    """Read a labelled validation set (``toy/`` + ``toy_label/sample/``, pixel labels in ``toy_label/pixel/``);
    sample labels are parsed by the evaluator's own reader (:func:`mood_dpa.data.mood.read_sample_label`)."""
    val_dir = Path(val_dir)
    vol_dir = val_dir / "toy" if (val_dir / "toy").is_dir() else val_dir
    label_root = next((c for c in (val_dir / "toy_label", val_dir.parent / "toy_label") if c.is_dir()), None)
    sample_dir = Path(labels_dir) if labels_dir is not None else (label_root / "sample" if label_root else None)
    if sample_dir is None or not sample_dir.is_dir():
        raise MoodError(f"{val_dir}: no sample labels found (expected toy_label/sample/<name>.txt); give --val-labels")
    paths = list_volumes(vol_dir)
    labels = []
    for p in paths:
        f = sample_dir / f"{p.name}.txt"
        if not f.is_file():
            raise MoodError(f"{f}: missing sample label for {p.name}")
        labels.append(read_sample_label(f))
    pixel_dir = label_root / "pixel" if label_root is not None and (label_root / "pixel").is_dir() else None
    return TuningSet(val_dir, paths, labels, pixel_dir, _fingerprint(val_dir, paths))


def _fingerprint(val_dir: Path, paths: Sequence[Path]) -> dict:
    """What a tuning set was, for later checks (``evaluate`` warns when it scores the same cases or volumes)."""
    out: dict[str, Any] = {"path": str(val_dir.resolve()), "cases": [p.name for p in paths]}
    manifest = val_dir / "manifest.csv"
    if manifest.is_file():
        out["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
        sources = manifest_sources(manifest)
        if sources:
            out["sources"] = sources  # the healthy volumes the set was made from (another seed shares them)
    return out


# ============================================================================ the one candidate search


def best_candidate(aps: Sequence[float]) -> int:
    """Index of the best AP; ties (to 12 digits) go to the earlier candidate."""
    return int(np.argmax(np.round(np.asarray(aps, np.float64), 12)))


def pixel_search(tuning: TuningSet, n: int, maps_of: Callable[[Any], Sequence[Any]], what: str, progress: bool) -> tuple[int, list[float]]:
    """Pooled pixel AP (exact, float16 codes) of ``n`` candidates: ``maps_of(volume data)`` gives each
    candidate's calibrated map of one tuning volume. Returns (best index, AP of every candidate)."""
    hists = [ScoreHistogram() for _ in range(n)]
    for p, vol in tuning.volumes(what, progress):
        label = tuning.pixel_label(p, vol.data.shape)
        for h, m in zip(hists, maps_of(vol.data)):
            h.add(m.cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m), label)
    aps = [float(h.ap()) for h in hists]
    return best_candidate(aps), aps


def sample_search(scores: np.ndarray, labels: Sequence[int]) -> tuple[int, list[float]]:
    """Sample AP of each candidate: ``scores`` (n_volumes, n_candidates). Returns (best index, AP of every one)."""
    scores = np.asarray(scores, np.float64)
    y = np.asarray(list(labels), np.int64)
    if scores.ndim != 2 or scores.shape[0] != y.size:
        raise ValueError(f"scores must be (n_volumes, n_candidates), got {scores.shape} for {y.size} labels")
    if not ((y == 0).any() and (y == 1).any()):
        raise MoodError("choosing a sample-level rule needs tuning volumes with both labels (normal and anomalous)")
    # the sample-level evaluator reads the written float as is (no float16 rounding at this level)
    aps = [float(average_precision(scores[:, j], y)) for j in range(scores.shape[1])]
    return best_candidate(aps), aps
