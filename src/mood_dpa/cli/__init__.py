"""Command line: ``mood-dpa SUBCOMMAND``. Thin: parse, call the library, print.

Command modules import the library inside their commands (start-up time: ``mood-dpa --help``
must not load torch); the import-linter contracts in pyproject.toml put this package on top.
"""

from __future__ import annotations

import sys

from ..errors import MoodError
from .app import app

# Each module registers its subcommands on `app` when imported.
from . import phantoms  # noqa: E402,F401  phantoms
from . import data  # noqa: E402,F401  slices, folds, synth
from . import prepare  # noqa: E402,F401  prepare, restore
from . import training  # noqa: E402,F401  pretrain, train, baseline fit / fit-volume
from . import detector  # noqa: E402,F401  ensemble, calibrate
from . import predict  # noqa: E402,F401  predict, submission
from . import evaluation  # noqa: E402,F401  evaluate, show
from . import pipeline  # noqa: E402,F401  fit, demo
from . import view  # noqa: E402,F401  view


def main(argv: list[str] | None = None) -> None:
    """Entry point. Every failure a user can cause is ONE ``error:`` line on stderr and exit code 2: a
    MoodError, a bad command line (click's usage errors), and an operating-system error such as a full
    disk or a read-only folder (the atomic writers have removed their temporaries by then). SIGTERM ends
    a command like Ctrl-C: exit 130 with a message. ``MOOD_DPA_DEBUG=1`` keeps the traceback."""
    import os

    import typer
    from typer.exceptions import TyperException  # typer >= 0.29 raises its (vendored click) errors as these

    from ..runtime import handle_sigterm
    from ..volumes import set_range_check

    handle_sigterm()
    set_range_check(False)  # commands that train or score turn it on (mood_dpa.cli.checks.range_check)
    debug = os.environ.get("MOOD_DPA_DEBUG", "") not in ("", "0")
    try:
        code = app(args=argv, prog_name="mood-dpa", standalone_mode=False)
    except TyperException as exc:  # a bad command line
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a group without its subcommand: its help
            typer.echo(ctx.get_help(), err=True)
            sys.exit(2)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"error: {message}{where}", file=sys.stderr)
        sys.exit(2)
    except MoodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except OSError as exc:
        if debug:
            raise
        what = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {what}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    if code == 130:  # typer turns an interrupt inside a command into exit code 130, silently
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted() -> None:
    """Ctrl-C or SIGTERM: one line saying so, exit 130 (the atomic writers removed their temporaries)."""
    from ..runtime import interruption

    why = str(interruption())
    why = "SIGTERM" if why == "signal 15" else (why or "Ctrl-C")
    print(f"interrupted ({why}): finished outputs are kept, unfinished ones were removed; rerun the same command "
          "to continue", file=sys.stderr)
    sys.exit(130)
