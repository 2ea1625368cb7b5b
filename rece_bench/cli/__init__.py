"""The ``rece-bench`` command: parse options, build a config, call one library function, render the result.

Each submodule registers its commands on ``app``; none imports torch at module level.
"""

from __future__ import annotations

import os

import typer

app = typer.Typer(
    name="rece-bench",
    help="Benchmark RECE and other losses for SASRec: quality, peak memory and training time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _startup() -> None:
    """Benchmark RECE and other losses for SASRec: quality, peak memory and training time."""
    from rece_bench.memory import keep_freed_memory

    if os.environ.get("RECE_BENCH_KEEP_FREED_MEMORY") == "1":  # opt-in: faster CPU steps, more resident memory
        keep_freed_memory()  # CPU steps reuse freed blocks instead of faulting in fresh pages (see its docstring)


# Imported for their side effect: each module adds its commands to `app`.
from rece_bench.cli import baseline, bench, commands, data, losses, sweep  # noqa: E402,F401
