"""Core commands: run, report, demo (the training path)."""

from __future__ import annotations

from rece_bench.cli import app


@app.command()
def version() -> None:
    """Print the package version."""
    from rece_bench import __version__

    print(__version__)
