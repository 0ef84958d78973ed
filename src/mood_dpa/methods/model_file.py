"""The one model-file format of every learned method: a ``torch.save``'d dict, read with ``weights_only``.

    {"format": "mood-dpa/<method>-model", "version": N, "meta": {...}, <the method's state dicts>}

Why one helper: every learned method's file says what it is (``format``: the registry's kind), carries
everything inference needs (``meta``: architecture, slice rule, provenance), opens without running
pickled code, is written atomically, and follows ONE version rule: a reader opens its own version and
every older one (it upgrades them), and refuses a newer one with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..atomic import atomic_path
from ..errors import MoodError


def save_model_file(path: str | os.PathLike, kind: str, version: int, meta: Mapping[str, Any], **parts: Any) -> Path:
    """Atomically write ``{"format": kind, "version": version, "meta": meta, **parts}`` to ``path``."""
    path = Path(path)
    payload = {"format": kind, "version": int(version), "meta": dict(meta), **parts}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_payload(path: str | os.PathLike) -> dict:
    """The dict of a ``.pt`` model file, opened with ``weights_only=True``; MoodError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickled code, not a torch file at all
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise MoodError(f"{path}: not a readable model file ({type(exc).__name__}{': ' + first if first else ''})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str):
        raise MoodError(f"{path}: not a mood-dpa model file (no 'format' entry)")
    return payload


def load_model_file(path: str | os.PathLike, kind: str, version: int, what: str) -> dict:
    """The payload of a model file of ``kind``, checked: the format, and the version rule (1 .. ``version``)."""
    payload = read_payload(path)
    if payload["format"] != kind:
        raise MoodError(f"{path}: not a {what} model file (format {payload['format']!r}, expected {kind!r})")
    found = payload.get("version")
    if not isinstance(found, int) or found < 1:
        raise MoodError(f"{path}: {what} model file has no valid version ({found!r})")
    if found > version:
        raise MoodError(f"{path}: {what} model file version {found} is newer than this mood-dpa reads ({version}); "
                        "update mood-dpa")
    if not isinstance(payload.get("meta"), dict):
        raise MoodError(f"{path}: {what} model file has no meta")
    return payload
