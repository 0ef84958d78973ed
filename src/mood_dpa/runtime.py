"""Process-wide settings every command shares: CPU threads and SIGTERM.

Why: on a shared machine a command that takes every core slows its neighbours (and itself) many times
over; ``docker stop``, SLURM and ``timeout`` send SIGTERM, which must end a command as cleanly as Ctrl-C
(temporaries removed, training checkpoint kept).
"""

from __future__ import annotations

import os
import signal
import time
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
    global _fixed_threads
    check_threads(threads)
    n = threads if threads is not None else threads_from_env()
    if n is None:
        return None
    _fixed_threads = True
    for var in THREAD_ENV:  # for libraries started later and for child processes (data loader workers)
        os.environ[var] = str(n)
    import torch  # start-up: torch only when a thread count is set

    torch.set_num_threads(n)
    return n


#: The last signal that interrupted this process (a library that catches the interrupt, as Lightning
#: does, loses it; :func:`interruption` gives it back).
_last_signal: int | None = None


class ThreadGovernor:
    """Keeps this process's CPU threads to the cores that no OTHER process is using.

    Why (benchmarks/bench_busy_cpu.py, BENCHMARKS.md): PyTorch's OpenMP threads wait for each other at
    the end of every parallel region; when another program takes one of two cores, every region waits for
    the thread the scheduler set aside, and training ran 2.9-3.4x slower than alone, slower than with ONE
    thread (which a busy neighbour does not slow at all). Every ``every`` seconds :meth:`check` measures
    the CPU time the rest of the machine used (``/proc/stat`` less this process's own) and sets
    ``torch.set_num_threads`` to the cores left (at least 1, at most ``max_threads``). It is on by default
    in the loops that compute (training steps, prediction and calibration volumes) and off when the user
    fixed the threads (``--threads``, ``OMP_NUM_THREADS``) or the system has no ``/proc/stat``.
    """

    def __init__(self, max_threads: int | None = None, every: float = 2.0, read_stat=None) -> None:
        self.max_threads = max(1, int(max_threads or os.cpu_count() or 1))
        self.every = float(every)
        self._read = read_stat or _read_proc_stat
        self._last: tuple[float, float, float] | None = None  # (wall, busy jiffies in s, own cpu s)
        self.threads = self.max_threads

    def threads_for(self, others: float) -> int:
        """The threads to use when the other processes keep ``others`` cores busy."""
        return int(min(self.max_threads, max(1, int(self.max_threads - others + 0.35))))

    def check(self, now: float | None = None) -> int:
        """Measure (at most every ``every`` s) and apply; returns the threads in use."""
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last[0] < self.every:
            return self.threads
        busy = self._read()
        if busy is None:
            return self.threads
        own = sum(os.times()[:2])
        if self._last is not None:
            wall = now - self._last[0]
            others = max(0.0, (busy - self._last[1]) - (own - self._last[2])) / max(wall, 1e-6)
            wanted = self.threads_for(others)
            if wanted != self.threads:
                import torch  # start-up: torch only when the threads change

                torch.set_num_threads(wanted)
                self.threads = wanted
        self._last = (now, busy, own)
        return self.threads


def _read_proc_stat() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all but idle and iowait), or None without /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / float(os.sysconf("SC_CLK_TCK"))


_governor: ThreadGovernor | None = None
_fixed_threads = False


def adapt_threads() -> None:
    """Let the governor adjust the threads, unless the user fixed them (call it often; it measures every 2 s)."""
    global _governor
    if _fixed_threads or threads_from_env() is not None:
        return
    if _governor is None:
        _governor = ThreadGovernor()
    _governor.check()


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
