"""Options and checks shared by the commands: --overwrite, --threads, --no-range-check, numeric ranges.

Each command calls these at its entry, before any work, so that a bad request ends in one ``error:``
line with nothing changed on disk (the checks themselves live in mood_dpa.outputs / runtime / volumes, imported
inside the functions for the start-up time of ``mood-dpa --help``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import typer

from ..errors import MoodError
from ..runtime import check_device, check_seed, check_threads, set_threads  # noqa: F401  set_threads: for the commands

#: The ``--threads`` option of every compute command (checked while the command line is read).
THREADS_OPTION = typer.Option(
    None, "--threads", callback=lambda value: check_threads(value),
    help="CPU threads for this command (default: OMP_NUM_THREADS / MKL_NUM_THREADS when set, else a training config's "
         "own count (the demo-scale ones: 1) or the cores no other process is using, measured every 2 s; a fixed N "
         "turns that off and makes runs bit-identical; see README 'Speed and scale').",
)


def seed_option(help: str, default: int = 0) -> Any:
    """``--seed``: a whole number from 0 to 2^32 - 1, checked while the command line is read (one error line)."""
    return typer.Option(default, "--seed", help=help, callback=lambda value: check_seed(value))


def device_option(help: str, *, index: bool = True) -> Any:
    """``--device``: checked (and ``gpu`` read as ``cuda``) while the command line is read, before any work."""
    return typer.Option(None, "--device", help=help, callback=lambda value: check_device(value, index=index))

OVERWRITE_OPTION = typer.Option(
    False, "--overwrite", help="Write into an existing folder that mood-dpa did not make (its other files are kept)."
)
OVERWRITE_FILE_OPTION = typer.Option(
    False, "--overwrite", help="Replace an existing output file that mood-dpa did not write (or that was changed since)."
)
NO_RANGE_CHECK_OPTION = typer.Option(
    False, "--no-range-check", help="Accept volumes whose intensities lie outside [0, 1] (they are clamped)."
)


def range_check(no_range_check: bool) -> None:
    """Check every volume read by this command for MOOD-form intensities in [0, 1] unless told not to."""
    from ..volumes import set_range_check

    set_range_check(not no_range_check)


def check_number(
    option: str,
    value: Optional[float],
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Refuse NaN, infinity and values outside [low, high] (open ends when asked) for a numeric option."""
    if value is None:
        return
    if not math.isfinite(float(value)):
        raise MoodError(f"{option} {value}: expected a finite number")
    lo_txt = "(" if low_open else "["
    hi_txt = ")" if high_open else "]"
    span = f"{lo_txt}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{hi_txt}"
    if low is not None and (value < low or (low_open and value == low)):
        raise MoodError(f"{option} {value:g}: expected a number in {span}")
    if high is not None and (value > high or (high_open and value == high)):
        raise MoodError(f"{option} {value:g}: expected a number in {span}")
