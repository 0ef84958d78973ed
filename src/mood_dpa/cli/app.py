"""The typer application every command module registers on (it imports nothing heavy: start-up time)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mood-dpa",
    help="Find what is unusual in 3-D medical scans without being shown an anomaly: self-supervised anomaly segmenters (2-D and 3-D), the Deep Perceptual Autoencoder and intensity-histogram baselines, one calibrated detector, the exact MOOD evaluator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from ..version import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Find what is unusual in 3-D medical scans (MOOD challenge compatible)."""
