"""Perceptual backbones: a name -> module registry, so a new backbone is one file plus one line here.

A backbone module provides:

* ``build(layers, width=1.0, seed=0) -> nn.Module``: a frozen-able feature extractor whose
  ``forward(x01 (N,1,S,S)) -> list of (N,C,h,w)`` returns the named ``layers`` in order, with
  attributes ``layers`` (tuple of names), ``width`` (channel multiplier) and method ``freeze()``;
* ``from_file(path, layers, width=None) -> nn.Module``: the same, weights read from a file;
* ``file_sha256(path) -> str``: the hash recorded in model files (which weights training used).

The DPA's loss config names one (``loss.backbone``, default ``vgg19``); the model file stores it
in ``meta["backbone"]`` and :func:`mood_dpa.methods.dpa.model.load_dpa_model` rebuilds it by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import MoodError

#: backbone name -> module (imported on first use: torch models are heavy)
BACKBONES: dict[str, str] = {
    "vgg19": "mood_dpa.models.backbones.vgg19",
}


def backbone(name: str) -> ModuleType:
    """The module of backbone ``name`` (MoodError naming the known ones otherwise)."""
    if name not in BACKBONES:
        raise MoodError(f"unknown perceptual backbone {name!r} (known: {', '.join(sorted(BACKBONES))})")
    return importlib.import_module(BACKBONES[name])
