"""Shared pieces of the command line: consoles, the user-error guard and the common options.

Only the ``rece_bench.cli`` package imports typer. Commands import torch inside their bodies, so that
``rece-bench --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from rece_bench.errors import UserError

# Piped or captured output has no terminal width; Rich would assume 80 columns and cut the result tables with
# ellipses, so such output gets room for a full table row instead.
PIPED_WIDTH = 160
console = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
err_console = Console(stderr=True)

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
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's UserError into the CLI's one-line error, exit code 2, no traceback."""
    try:
        yield
    except UserError as exc:
        fail(str(exc))


def check_device(text: str) -> str:
    """A device this machine has, as a string: 'cpu', 'cuda' or 'cuda:N'; anything else is a UserError."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"--device {text!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {text} asked for, but CUDA is not available here: use --device cpu")
    if device.type not in {"cpu", "cuda"}:
        raise UserError(f"--device {text}: only cpu and cuda are measured")
    return str(device)
