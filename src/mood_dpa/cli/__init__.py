"""Command line: ``mood-dpa SUBCOMMAND``. Thin: parse, call the library, print.

Command modules import heavy libraries (torch) inside their functions so that
``mood-dpa --help`` stays fast.
"""

from __future__ import annotations

import sys

from ..errors import MoodError
from .app import app

# Each module registers its subcommands on `app` when imported.
from . import phantoms  # noqa: E402,F401  phantoms, show
from . import foundation  # noqa: E402,F401  slices, folds
from . import evaluation  # noqa: E402,F401  synth, evaluate, baseline, predict
from . import training  # noqa: E402,F401  pretrain, train
from . import inference  # noqa: E402,F401  calibrate, submission
from . import demo  # noqa: E402,F401  demo
from . import prepare  # noqa: E402,F401  prepare, restore
from . import fit  # noqa: E402,F401  fit
from . import view  # noqa: E402,F401  view


def main(argv: list[str] | None = None) -> None:
    """Entry point: a MoodError becomes one line on stderr and exit code 2; SIGTERM ends it like Ctrl-C."""
    from ..runtime import handle_sigterm

    from ..volumes import set_range_check

    handle_sigterm()
    set_range_check(False)  # commands that train or score turn it on (mood_dpa.cli.checks.range_check)
    try:
        app(args=argv, prog_name="mood-dpa")
    except MoodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
