"""The ``rece-bench`` command: parse options, build a config, call one library function, render the result.

Each module of this package defines plain command functions; this module adds them to ``app`` in one place.
No command module imports torch at module level, so ``rece-bench --help`` stays instant.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from rece_bench.cli import baseline, bench, commands, data, losses, sweep
from rece_bench.signals import sigterm_as_interrupt

app = typer.Typer(
    name="rece-bench",
    help="Benchmark RECE and other losses for SASRec: quality, peak memory and training time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _print_version(given: bool) -> None:
    if given:
        from rece_bench import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _startup(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """Benchmark RECE and other losses for SASRec: quality, peak memory and training time."""
    from rece_bench.cli.common import fit_console_to_output
    from rece_bench.memory import keep_freed_memory

    fit_console_to_output()
    ctx.call_on_close(sigterm_as_interrupt())  # one policy for every command: SIGTERM is Ctrl-C (rece_bench.signals)
    if os.environ.get("RECE_BENCH_KEEP_FREED_MEMORY") == "1":  # opt-in: faster CPU steps, more resident memory
        keep_freed_memory()  # CPU steps reuse freed blocks instead of faulting in fresh pages (see its docstring)


# (name, function), in the order `rece-bench --help` lists them.
COMMANDS = (
    ("datasets", data.datasets),
    ("prepare", data.prepare),
    ("losses", losses.losses_command),
    ("run", commands.run),
    ("sweep", sweep.sweep),
    ("report", commands.report),
    ("popularity", baseline.popularity),
    ("bench-loss", losses.bench_loss_command),
    ("bench-step", bench.bench_step),
    ("demo", commands.demo),
    ("version", commands.version),
)
for _name, _function in COMMANDS:
    app.command(_name)(_function)
