"""The ONE registry of detector methods: every command reads it (train, fit, demo, ensemble, calibrate, predict).

A method is a folder under ``methods/`` and one :class:`MethodEntry` below. The entry says

* ``kind``: what its model files declare (``.pt``: the dict's ``format``; ``.npz``: the ``detector`` entry);
  :func:`model_kind` reads it, :func:`method_for_file` finds the entry;
* ``loader``: ``load(path, device) -> raw scorers`` for the shell (:mod:`mood_dpa.scoring`: ``AxisModel`` for
  slice models, ``VolumeModel`` for whole-volume ones, ``SampleModel`` for sample-level ones);
* ``voxel_map``: False for a sample-level method (one score per volume, no map: refused for the pixel task);
* ``trainer`` / ``config``: ``train(cfg, resume) -> model path`` and its config class, for ``mood-dpa train
  CONFIG`` (dispatched on the YAML's ``method:``), None when the method is fitted without a config;
* ``recipes``: how ``fit`` (and so the demo) makes its models (:class:`Recipe`: display name, the data it
  trains on, packaged configs and sizes per preset), from the method's own ``recipe.py``;
* ``seen_kinds``: ``meta -> evaluation kinds`` its training synthesised (the "seen" marks of every table);
* ``settings`` / ``settings_writer``: the shell settings a lone model file carries (``predict --model X.npz``).

Entries name their code by ``"module:attribute"`` strings, so importing the registry stays cheap (no torch
until a method is used). Adding a method: its folder, and ONE line in :data:`_ENTRIES`
(docs/ARCHITECTURE.md lists the files).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

from ..errors import MoodError

DEFAULT_METHOD = "dpa"
#: What a recipe's trainer reads: the training volumes themselves, the slice store of each axis in turn
#: (one model per axis), or all slice stores at once (one model for every axis).
RecipeData = Literal["volumes", "axis_stores", "all_stores"]


def _resolve(ref: str | None) -> Any:
    if ref is None:
        return None
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Recipe:
    """How ``fit`` makes one model family of a method (a ``--method`` name of ``fit``).

    ``configs``: config group -> packaged config (under ``mood_dpa/configs``; ``{kind}`` and ``{axis}`` are
    filled in); the demo-scale presets use group ``demo``, the MOOD-scale preset ``seed``.
    ``overrides``: preset -> ``--set`` overrides of that config (sizes, budgets). ``fitter`` replaces the
    config-driven trainer for a method fitted on volumes without a config: ``fitter(volumes, out, seed)``.
    """

    name: str
    display: str
    data: RecipeData
    configs: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    backbone: bool = False  # needs the SimCLR-pretrained VGG19 (loss.vgg)
    member: bool = True  # joins fit's cross-method detector
    fitter: str | None = None
    note: str = ""  # one line for the report
    families: bool = False  # trains on synthesised anomaly families: fit can hold families out (held-out runs)

    @property
    def fit(self) -> Callable[..., Path] | None:
        """The fitter of a recipe without a config (``fitter(volumes, out, seed=, progress=)``), or None."""
        return _resolve(self.fitter)

    @property
    def per_axis(self) -> bool:
        return self.data == "axis_stores"

    @property
    def needs_slices(self) -> bool:
        return self.data in ("axis_stores", "all_stores")


@dataclass(frozen=True)
class MethodEntry:
    """One method: its name (``method:`` in a training YAML) and everything every command needs of it."""

    name: str
    kind: str
    loader: str
    voxel_map: bool = True
    trainer: str | None = None
    config_ref: str | None = None
    recipes_ref: str | None = None
    seen_ref: str | None = None
    settings_ref: str | None = None
    settings_writer_ref: str | None = None

    def load(self, path: str | os.PathLike, device: Any = None) -> list:
        """Raw scorers of one model file, on ``device`` (None: the CPU)."""
        return _resolve(self.loader)(path, device)

    @property
    def train(self) -> Callable[..., Path | None] | None:
        return _resolve(self.trainer)

    @property
    def config(self) -> type | None:
        return _resolve(self.config_ref)

    @property
    def recipes(self) -> tuple[Recipe, ...]:
        return tuple(_resolve(self.recipes_ref) or ())

    def seen_kinds(self, meta: Mapping[str, Any]) -> tuple[str, ...]:
        """The evaluation kinds whose family this method synthesised when training the model of ``meta``."""
        fn = _resolve(self.seen_ref)
        return tuple(fn(meta)) if fn is not None else ()

    def shell_settings(self, path: str | os.PathLike) -> dict:
        fn = _resolve(self.settings_ref)
        return dict(fn(path)) if fn is not None else {}

    def store_shell_settings(self, path: str | os.PathLike, settings: Mapping[str, Any]) -> None:
        fn = _resolve(self.settings_writer_ref)
        if fn is None:
            raise MoodError(f"{path}: a {self.name} model file carries no shell settings; put it in a detector file")
        fn(path, dict(settings))


_ENTRIES = [
    MethodEntry("histogram", "histogram", "mood_dpa.methods.histogram.scorer:load_scorers",
                recipes_ref="mood_dpa.methods.histogram.recipe:RECIPES",
                settings_ref="mood_dpa.methods.histogram.model:read_shell_settings",
                settings_writer_ref="mood_dpa.methods.histogram.model:write_shell_settings"),
    MethodEntry("dpa", "mood-dpa/dpa-model", "mood_dpa.methods.dpa.scorer:load_scorers",
                trainer="mood_dpa.methods.dpa.train:train_dpa", config_ref="mood_dpa.methods.dpa.config:DPATrainConfig",
                recipes_ref="mood_dpa.methods.dpa.recipe:RECIPES"),
    MethodEntry("segmenter", "mood-dpa/segmenter-model", "mood_dpa.methods.segmenter.scorer:load_scorers",
                trainer="mood_dpa.methods.segmenter.train:train_segmenter",
                config_ref="mood_dpa.methods.segmenter.config:SegmenterTrainConfig",
                recipes_ref="mood_dpa.methods.segmenter.recipe:RECIPES", seen_ref="mood_dpa.methods.segmenter.recipe:seen_kinds"),
    # sample level only (a SampleModel, no voxel map); fitted by `mood-dpa baseline fit-volume`
    MethodEntry("volume-histogram", "volume-histogram", "mood_dpa.methods.volume_histogram.scorer:load_scorers",
                voxel_map=False, recipes_ref="mood_dpa.methods.volume_histogram.recipe:RECIPES"),
]

#: model-file kind -> method
METHODS: dict[str, MethodEntry] = {e.kind: e for e in _ENTRIES}


def method_names() -> list[str]:
    return [e.name for e in _ENTRIES]


def method_by_name(name: str) -> MethodEntry:
    for e in _ENTRIES:
        if e.name == name:
            return e
    raise MoodError(f"unknown method {name!r} (known: {', '.join(method_names())})")


def recipes() -> dict[str, tuple[MethodEntry, Recipe]]:
    """Every recipe ``fit`` knows, by name, in training order (the order of the entries)."""
    return {r.name: (e, r) for e in _ENTRIES for r in e.recipes}


def recipe(name: str) -> tuple[MethodEntry, Recipe]:
    found = recipes()
    if name not in found:
        raise MoodError(f"unknown method {name!r} (choose from {', '.join(found)})")
    return found[name]


@contextlib.contextmanager
def read_npz(path: str | os.PathLike) -> Iterator[Any]:
    """Open a ``.npz`` model file (one-line MoodError when it is not a readable archive)."""
    import numpy as np  # the registry stays cheap to import (no numpy/torch until a file is read)

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
        from .model_file import read_payload  # torch only when a .pt file is read

        return read_payload(path)["format"]
    raise MoodError(f"{path}: unknown model file type {path.suffix or '(none)'}; expected a .pt or .npz model file")


def method_for_file(path: str | os.PathLike) -> MethodEntry:
    kind = model_kind(path)
    if kind not in METHODS:
        raise MoodError(f"{path}: unknown detector {kind!r} in model file (known: {', '.join(METHODS)})")
    return METHODS[kind]


def load_scorers(path: str | os.PathLike, device: Any = None) -> list:
    """Raw scorers of any registered model file."""
    return method_for_file(path).load(path, device)


def model_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` a ``.pt`` model file carries ({} for other files): provenance, training config."""
    path = Path(path)
    if path.suffix.lower() not in (".pt", ".pth"):
        return {}
    from .model_file import read_payload  # torch only when a .pt file is read

    meta = read_payload(path).get("meta")
    return dict(meta) if isinstance(meta, dict) else {}
