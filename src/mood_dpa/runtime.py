"""Process-wide settings every command shares: CPU threads and SIGTERM.

Why: on a shared machine a command that takes every core slows its neighbours (and itself) many times
over; ``docker stop``, SLURM and ``timeout`` send SIGTERM, which must end a command as cleanly as Ctrl-C
(temporaries removed, training checkpoint kept).
"""

from __future__ import annotations

import os
import signal
from typing import Optional

import typer

from .errors import MoodError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: The ``--threads`` option of every compute command.
THREADS_OPTION = typer.Option(
    None, "--threads", help="CPU threads for this command (default: OMP_NUM_THREADS / MKL_NUM_THREADS when set, else every core)."
)


def threads_from_env() -> Optional[int]:
    """The thread count OMP_NUM_THREADS (else MKL_NUM_THREADS) asks for, or None."""
    for var in THREAD_ENV:
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise MoodError(f"{var}={value!r}: expected a whole number of threads") from None
            if n < 1:
                raise MoodError(f"{var}={value!r}: expected at least 1 thread")
            return n
    return None


def set_threads(threads: Optional[int]) -> Optional[int]:
    """Apply ``--threads`` (or the thread environment variables when it is not given); returns the count used."""
    if threads is not None and threads < 1:
        raise MoodError(f"--threads must be at least 1, got {threads}")
    n = threads if threads is not None else threads_from_env()
    if n is None:
        return None
    for var in THREAD_ENV:  # for libraries started later and for child processes (data loader workers)
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)
    return n


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def handle_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C (KeyboardInterrupt) in this process; only from the main thread."""
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        pass
