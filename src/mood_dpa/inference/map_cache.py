"""A memo of members' raw maps, so that one volume is scored once by one model however many detectors use it.

Why: ``fit`` builds a detector per method and one across methods over the SAME model files, and tunes each
on the same tuning set; the demo then predicts the same test volumes with each of them. Without a memo the
cross-method detector scores every volume with every member again (the 2-D segmenter's maps were a third
of the demo's prediction time). A raw map depends only on the member's model files and weights, its axis
rule, the view (plain or mirrored along one axis), the standardiser, the volume's bytes, and how it runs
(device, batch, bf16), so those make the key and a hit is bit-identical to scoring again.

The memo is off unless a caller opens one: ``with raw_map_cache(budget_bytes): ...`` (``fit`` and the demo
do). Inside, every :class:`~mood_dpa.inference.detector.ShellDetector` whose members carry a ``key`` (the
loaders set it from the files' sha256) reads and fills it; the least recently used maps go once the budget
is full. Maps are kept on the CPU (a GPU's memory stays for the models) and handed out as copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..ownership import file_sha256

#: What ``fit`` and the demo give the memo: 1 GiB (the demo's 64^3 maps are 1 MiB each, MOOD's 256^3 brains 64 MiB)
DEFAULT_BUDGET_BYTES = 1 << 30


class RawMapCache:
    """Least-recently-used raw maps within a byte budget (module docstring). ``hits``/``misses`` count lookups."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes < 0:
            raise ValueError("the map cache's budget must be >= 0 bytes")
        self.budget_bytes = int(budget_bytes)
        self._maps: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._maps)

    def get(self, key: tuple, device: Any) -> torch.Tensor | None:
        """A copy of the map stored under ``key`` on ``device``, or None."""
        found = self._maps.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._maps.move_to_end(key)
        return found.to(device, copy=True)

    def put(self, key: tuple, value: torch.Tensor) -> None:
        """Keep a CPU copy of ``value`` (a map larger than the whole budget is not kept)."""
        size = self._nbytes(value)
        if size > self.budget_bytes:
            return
        if key in self._maps:
            self.bytes -= self._nbytes(self._maps.pop(key))
        self._maps[key] = value.detach().to("cpu", copy=True)
        self.bytes += size
        while self.bytes > self.budget_bytes:
            _, old = self._maps.popitem(last=False)
            self.bytes -= self._nbytes(old)

    @staticmethod
    def _nbytes(t: torch.Tensor) -> int:
        return t.element_size() * t.nelement()


_ACTIVE: ContextVar[RawMapCache | None] = ContextVar("mood_dpa_raw_map_cache", default=None)


def active_cache() -> RawMapCache | None:
    """The memo opened by the innermost :func:`raw_map_cache`, or None (no memo: every map is scored)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def raw_map_cache(budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Iterator[RawMapCache]:
    """Open a memo for the block (an enclosing one is reused, so nested callers share it)."""
    outer = _ACTIVE.get()
    if outer is not None:
        yield outer
        return
    cache = RawMapCache(budget_bytes)
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def volume_digest(data: np.ndarray | torch.Tensor) -> str:
    """A digest of a volume's values, shape and dtype (what a raw map is a function of)."""
    arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def member_key(method: str, combine: str, files: Sequence[tuple[str | Path, float]]) -> str:
    """The identity of a member's raw map: its method, axis rule, and each model file's content and weight."""
    parts = [method, combine, *(f"{file_sha256(p)}:{float(w)!r}" for p, w in files)]  # a retrained file: another key
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def standardiser_key(standardiser: Any) -> str:
    """The identity of a detector's standardiser ("" without one)."""
    if standardiser is None:
        return ""
    return hashlib.sha256(json.dumps(standardiser.to_dict(), sort_keys=True).encode()).hexdigest()
