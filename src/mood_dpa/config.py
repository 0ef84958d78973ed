"""Typed configs loaded from YAML, with one-line errors that name the file and the key.

Each subsystem defines its own config class on :class:`StrictModel`; this module
only loads YAML, applies ``--set key=value`` overrides and reports mistakes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import MoodError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are checked by type."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MoodError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except OSError as exc:
        raise MoodError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise MoodError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MoodError(f"{path}: expected a mapping of keys at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML scalars/lists."""
    for item in overrides or []:
        if "=" not in item:
            raise MoodError(f"--set {item}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise MoodError(f"--set {item}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "<top>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def validate(cls: type[M], data: dict[str, Any], source: str = "<config>") -> M:
    """Build ``cls`` from a dict, turning validation errors into one MoodError line."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise MoodError(_format_error(source, exc)) from None


def load_config(cls: type[M], path: str | os.PathLike, overrides: list[str] | None = None) -> M:
    """Load a YAML file into the config class ``cls``; ``overrides`` are ``key=value`` strings."""
    data = apply_overrides(read_yaml(path), overrides)
    return validate(cls, data, str(path))


def dump_config(cfg: BaseModel) -> str:
    """The config as YAML text (what a run saves next to its outputs)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
