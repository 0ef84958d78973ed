"""Torch-free plumbing for prediction over many volumes: sharding across processes and overlapped writes.

Kept free of torch so that :mod:`mood_dpa.inference.predict` can use it for every detector (the
histogram baseline included) without paying for the torch import.

* :func:`shard_paths` - this rank's share of the inputs under ``torchrun`` (``RANK`` / ``WORLD_SIZE``).
* :class:`BackgroundWriter` - writes in one background thread, bounded queue, errors reported per file.

With :func:`mood_dpa.volumes.iter_volumes` (read-ahead in threads) these make a read / compute / write
pipeline: while volume k is scored, k+1 is being read and k-1 written.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from ..errors import MoodError
from ..ranks import global_rank
from ..ranks import world_size as env_world_size


def shard_paths(paths: Sequence, rank: int | None = None, world_size: int | None = None) -> list:
    """This process's share of ``paths`` for prediction sharded across processes (e.g. ``torchrun``).

    ``rank`` / ``world_size`` default to the ``RANK`` / ``WORLD_SIZE`` environment variables (0 / 1).
    Strided split: rank r gets items r, r + W, r + 2W, ...; every item goes to exactly one rank, and
    each rank writes its own outputs, so no gathering is needed.
    """
    r = global_rank() if rank is None else int(rank)
    ws = env_world_size() if world_size is None else int(world_size)
    if ws < 1 or not 0 <= r < ws:
        raise MoodError(f"bad sharding: rank {r} of world size {ws}")
    return list(paths)[r::ws]


class BackgroundWriter:
    """Write outputs in one background thread so writing volume k overlaps scoring volume k+1.

    ``submit(fn, *args, done=callback)`` queues ``fn(*args)``; at most ``max_pending`` writes wait
    (a full queue blocks the caller, bounding memory to a few score volumes). ``done(result, error)``
    is called in the caller's thread, in submission order, when a write finished: ``error`` is the
    MoodError / OSError it raised (other exceptions propagate). ``close()`` (or leaving the ``with``
    block) waits for every write. Use with :func:`mood_dpa.volumes.iter_volumes` (read-ahead) for a
    read / compute / write pipeline.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self.max_pending = max(1, int(max_pending))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mood-dpa-writer")
        self._pending: deque = deque()

    def submit(self, fn: Callable, *args, done: Callable | None = None, **kwargs) -> None:
        while len(self._pending) >= self.max_pending:
            self._finish_one()
        self._pending.append((self._pool.submit(fn, *args, **kwargs), done))

    def _finish_one(self) -> None:
        fut, done = self._pending.popleft()
        try:
            result, error = fut.result(), None
        except (MoodError, OSError) as exc:
            result, error = None, exc
        if done is not None:
            done(result, error)
        elif error is not None:
            raise error

    def close(self) -> None:
        try:
            while self._pending:
                self._finish_one()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
