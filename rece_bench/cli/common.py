"""Shared pieces of the command line: consoles, the user-error guard and the common options.

Only the ``rece_bench.cli`` package imports typer. Commands import torch inside their bodies, so that
``rece-bench --help`` stays instant.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from rece_bench.errors import UserError

# Piped or captured output has no terminal width; Rich would assume 80 columns, so such output gets room for a full
# table row instead, unless COLUMNS says otherwise. Tables fold what does not fit rather than cut it.
PIPED_WIDTH = 160
console = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
err_console = Console(stderr=True)


def print_table(table) -> None:
    """Print a Rich table laid out for the console's width: no number split, no column dropped
    (``rece_bench.cli.layout``)."""
    from rece_bench.cli.layout import fit_table

    console.print(fit_table(table, console.width))


def fit_console_to_output() -> None:
    """The width of this invocation's output: COLUMNS when set, else the terminal's, else PIPED_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        console.width = int(columns)
    else:
        console.width = None if sys.stdout.isatty() else PIPED_WIDTH  # None: Rich asks the terminal


DataDirOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option("--data-dir", help="Data root (default: $RECE_BENCH_DATA, else ./datasets)."),
]
ResultsDirOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--results-dir", help="Results root (default: $RECE_BENCH_RESULTS, else ./results)."),
]


def fail(message: str) -> NoReturn:
    """Print a one-line error and leave with exit code 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # '.[ray]' stays
    raise typer.Exit(code=2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's UserError into the CLI's one-line error, exit code 2, no traceback; and a Ctrl-C or
    SIGTERM that the command did not handle itself into one line and exit code 130 (``rece_bench.signals``)."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        from rece_bench.signals import INTERRUPTED_EXIT

        err_console.print("[yellow]interrupted[/]: stopped before the end, nothing more was written", highlight=False)
        raise typer.Exit(code=INTERRUPTED_EXIT) from None


def resolved_device(text: str) -> str:
    """The indexed device of ``--device`` as a string ('cpu', 'cuda:0'); ``device.resolve_device`` says why not."""
    from rece_bench.device import resolve_device

    return str(resolve_device(text))


# ---------------------------------------------------------------- options shared by several commands

OptInt = Optional[int]  # noqa: UP045 - typer reads the annotation at runtime
OptFloat = Optional[float]  # noqa: UP045
ParamOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--param", "-p", help="A loss parameter as KEY=VALUE, repeatable (e.g. -p n_extra_chunks=3)."),
]
BudgetOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Peak-memory budget: 512MB, 2GB (powers of 1000), 2GiB (powers of 1024) or bytes (1.5e9)."),
]
ThreadsOption = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(help="Torch CPU threads per job (default 1 per job; on Ray, --cpus-per-job): fair timings."),
]
PRECISION_HELP = (
    "fp32; bf16 (the choice on a GPU: the model's forward and the loss under bfloat16 autocast, float32 weights); "
    "or fp16 (float16 autocast with a gradient scaler)."
)
PrecisionOption = Annotated[str, typer.Option(help=PRECISION_HELP)]
GridOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="TOML file of budget ladders per loss, replacing the built-in ones (Python 3.11+)."),
]


def default_of(config_class: type, name: str) -> Any:
    """The default of a config dataclass's field: the one place a default is written (the CLI shows it)."""
    field = next(f for f in dataclasses.fields(config_class) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]


def parse_params(pairs: list[str] | None) -> dict[str, object]:
    """KEY=VALUE strings -> dict; values are Python literals where they parse (3, 0.75, True), else strings."""
    params: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {pair!r} is not KEY=VALUE: write it like --param n_extra_chunks=3")
        try:
            params[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = raw.strip()
    return params
