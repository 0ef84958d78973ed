"""The ONE registry of detector methods, keyed by the kind a model file declares.

A model file says what it is: a ``.pt`` file is a ``torch.save``'d dict whose ``format`` names it
(``"mood-dpa/dpa-model"``); a ``.npz`` file has a ``detector`` entry (``"histogram"``, ``"volume-histogram"``).
:func:`model_kind` reads that; :data:`METHODS` maps it to a :class:`MethodEntry` that knows how to

* ``load(path, device) -> list`` of raw scorers for the shell (:class:`~mood_dpa.inference.scorer.AxisModel`
  for slice models, :class:`~mood_dpa.inference.scorer.VolumeModel` for whole-volume ones,
  :class:`~mood_dpa.inference.scorer.SampleModel` for sample-level ones that give no voxel map);
* ``train(cfg, resume=False) -> model path`` (``cfg``: an instance of ``config``) (``mood-dpa train CONFIG`` dispatches
  on the YAML's top-level ``method:``, default ``dpa``), or None when the method is fitted elsewhere;
* ``config``: its training config class (or None);
* ``shell_settings(path) -> dict``: shell settings a lone model file carries (``calibration``,
  ``sample_rule``, ``background_threshold``), used when the file itself is given to ``predict``.

Adding a method: write ``methods/NAME/`` with a loader returning raw scorers and a ``train`` built on
:func:`mood_dpa.training.runner.run_training`, then add ONE entry below, as the segmenter's::

    _entry("segmenter", "mood-dpa/segmenter-model", "mood_dpa.methods.segmenter.scorer:load_scorers",
           train="mood_dpa.methods.segmenter.train:train_segmenter",
           config="mood_dpa.methods.segmenter.config:SegmenterTrainConfig")

Entries name their code by ``"module:attribute"`` strings so that importing the registry stays cheap
(no torch until a method is used). Ensembles, calibration, ``predict`` and the CLI need nothing else.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import MoodError

DEFAULT_METHOD = "dpa"


def _resolve(ref: str | None) -> Any:
    if ref is None:
        return None
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class MethodEntry:
    """One method: its name (``method:`` in a training YAML) and the kind its model files declare."""

    name: str
    kind: str
    loader: str
    trainer: str | None = None
    config_ref: str | None = None
    settings_ref: str | None = None

    def load(self, path: str | os.PathLike, device: Any = None) -> list:
        """Raw scorers of one model file, on ``device`` (None: the CPU)."""
        return _resolve(self.loader)(path, device)

    @property
    def train(self) -> Callable[..., Path | None] | None:
        return _resolve(self.trainer)

    @property
    def config(self) -> type | None:
        return _resolve(self.config_ref)

    def shell_settings(self, path: str | os.PathLike) -> dict:
        fn = _resolve(self.settings_ref)
        return dict(fn(path)) if fn is not None else {}


def _entry(name: str, kind: str, loader: str, *, train: str | None = None, config: str | None = None,
           settings: str | None = None) -> MethodEntry:
    return MethodEntry(name, kind, loader, train, config, settings)


_ENTRIES = [
    _entry("dpa", "mood-dpa/dpa-model", "mood_dpa.methods.dpa.scorer:load_scorers",
           train="mood_dpa.methods.dpa.train:train_dpa", config="mood_dpa.methods.dpa.config:DPATrainConfig"),
    _entry("histogram", "histogram", "mood_dpa.methods.histogram.scorer:load_scorers",
           settings="mood_dpa.methods.registry:histogram_settings"),
    _entry("segmenter", "mood-dpa/segmenter-model", "mood_dpa.methods.segmenter.scorer:load_scorers",
           train="mood_dpa.methods.segmenter.train:train_segmenter",
           config="mood_dpa.methods.segmenter.config:SegmenterTrainConfig"),
    # sample level only (a SampleModel, no voxel map); fitted by `mood-dpa baseline fit-volume`
    _entry("volume-histogram", "volume-histogram", "mood_dpa.methods.volume_histogram.scorer:load_scorers"),
]

#: model-file kind -> method
METHODS: dict[str, MethodEntry] = {e.kind: e for e in _ENTRIES}


def method_names() -> list[str]:
    return [e.name for e in METHODS.values()]


def method_by_name(name: str) -> MethodEntry:
    for e in METHODS.values():
        if e.name == name:
            return e
    raise MoodError(f"unknown method {name!r} (known: {', '.join(method_names())})")


@contextlib.contextmanager
def read_npz(path: str | os.PathLike) -> Iterator[Any]:
    """Open a ``.npz`` model file (one-line MoodError when it is not a readable archive)."""
    import numpy as np

    try:
        z = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise MoodError(f"{path}: not a readable .npz model file ({exc})") from None
    with z:
        yield z


def model_kind(path: str | os.PathLike) -> str:
    """The kind a model file declares (``.pt``: its dict's ``format``; ``.npz``: its ``detector`` entry)."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with read_npz(path) as z:
            if "detector" not in z.files:
                raise MoodError(f"{path}: .npz file without a 'detector' entry; not a mood-dpa model file")
            return str(z["detector"])
    if suffix in (".pt", ".pth"):
        import torch

        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise MoodError(f"{path}: not a readable model file ({type(exc).__name__})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("format"), str):
            raise MoodError(f"{path}: not a mood-dpa model file (no 'format' entry)")
        return payload["format"]
    raise MoodError(f"{path}: unknown model file type {path.suffix or '(none)'}; expected a .pt or .npz model file")


def method_for_file(path: str | os.PathLike) -> MethodEntry:
    kind = model_kind(path)
    if kind not in METHODS:
        raise MoodError(f"{path}: unknown detector {kind!r} in model file (known: {', '.join(METHODS)})")
    return METHODS[kind]


def load_scorers(path: str | os.PathLike, device: Any = None) -> list:
    """Raw scorers of any registered model file (the registry's one entry point for the shell)."""
    return method_for_file(path).load(path, device)


# ---------------------------------------------------------------- glue of the built-in entries


def histogram_settings(path: str | os.PathLike) -> dict:
    from .histogram.model import HistogramModel

    return HistogramModel.load(path).shell
