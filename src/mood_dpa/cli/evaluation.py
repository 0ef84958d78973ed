"""Commands of this area register on the shared app (see cli/__init__.py)."""

from __future__ import annotations

from .app import app  # noqa: F401
