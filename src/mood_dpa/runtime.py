"""Process-wide settings every command shares: CPU threads and SIGTERM.

Why: on a shared machine a command that takes every core slows its neighbours (and itself) many times
over; ``docker stop``, SLURM and ``timeout`` send SIGTERM, which must end a command as cleanly as Ctrl-C
(temporaries removed, training checkpoint kept).
"""

from __future__ import annotations

import os
import signal
from typing import Optional

from .errors import MoodError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

def threads_from_env() -> Optional[int]:
    """The thread count OMP_NUM_THREADS (else MKL_NUM_THREADS) asks for, or None."""
    for var in THREAD_ENV:
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise MoodError(f"{var}={value!r}: expected a whole number of threads") from None
            return check_threads(n, var)
    return None


#: More CPU threads than this is a mistake (and overflows the thread libraries).
MAX_THREADS = 1024
#: Seeds every random step takes: numpy's, torch's and Lightning's generators all accept this range.
MAX_SEED = 2**32 - 1


def check_seed(seed: Optional[int], option: str = "--seed") -> Optional[int]:
    """A seed in [0, 2^32 - 1] (one line otherwise, before any work)."""
    if seed is not None and not 0 <= int(seed) <= MAX_SEED:
        raise MoodError(f"{option} {seed}: expected a whole number from 0 to {MAX_SEED}")
    return seed


def check_threads(threads: Optional[int], option: str = "--threads") -> Optional[int]:
    if threads is not None and not 1 <= int(threads) <= MAX_THREADS:
        raise MoodError(f"{option} {threads}: expected a whole number of threads from 1 to {MAX_THREADS}")
    return threads


def check_device(device: Optional[str], *, index: bool = True) -> Optional[str]:
    """``--device`` checked BEFORE any work: auto (None), cpu, gpu (= cuda), cuda, cuda:N (``index``), mps.
    Returns the name to use (None: automatic); a device this machine lacks is one clear line."""
    if device is None or device.strip().lower() in ("", "auto"):
        return None
    name = device.strip().lower()
    name = "cuda" + name[3:] if name.startswith("gpu") else name
    kind, _, number = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (number and (kind != "cuda" or not index or not number.isdigit())):
        choices = "auto, cpu, gpu, cuda" + (", cuda:N" if index else "") + ", mps"
        raise MoodError(f"--device {device!r}: not a device name (use {choices})")
    if kind == "cpu":
        return "cpu"
    import torch  # start-up: torch only to look for an accelerator

    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise MoodError(f"--device {device}: this machine has no Apple GPU (MPS)")
        return "mps"
    if not torch.cuda.is_available():
        raise MoodError(f"--device {device}: this machine has no CUDA GPU (use cpu or auto)")
    if number and int(number) >= torch.cuda.device_count():
        raise MoodError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def set_threads(threads: Optional[int]) -> Optional[int]:
    """Apply ``--threads`` (or the thread environment variables when it is not given); returns the count used."""
    check_threads(threads)
    n = threads if threads is not None else threads_from_env()
    if n is None:
        return None
    for var in THREAD_ENV:  # for libraries started later and for child processes (data loader workers)
        os.environ[var] = str(n)
    import torch  # start-up: torch only when a thread count is set

    torch.set_num_threads(n)
    return n


#: The last signal that interrupted this process (a library that catches the interrupt, as Lightning
#: does, loses it; :func:`interruption` gives it back).
_last_signal: int | None = None


def _raise_interrupt(signum, frame):  # noqa: ARG001
    global _last_signal
    _last_signal = signum
    raise KeyboardInterrupt(f"signal {signum}")


def interruption() -> KeyboardInterrupt:
    """The interrupt to raise again after a library swallowed it (``signal N`` when a signal caused it)."""
    return KeyboardInterrupt(f"signal {_last_signal}" if _last_signal is not None else "")


def handle_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C (KeyboardInterrupt) in this process; only from the main thread."""
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        pass
