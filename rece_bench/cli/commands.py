"""Core commands: run, report, demo (the training path)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated, Optional

import typer

from rece_bench.cli import app
from rece_bench.cli.common import DataDirOption, ResultsDirOption, console, fail, user_errors
from rece_bench.errors import UserError

ParamOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option(
        "--param", "-p", help="A loss parameter as KEY=VALUE, repeatable (e.g. -p n_extra_chunks=3)."
    ),
]


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


def check_device(device: str) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but CUDA is not available here: use --device cpu")
    return device


class RichTrainingProgress:
    """Epoch bar with the step loss, the last validation NDCG@10 and the peak memory so far."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._label = label
        self._epochs = self._steps = None
        self._valid = float("nan")

    def __enter__(self) -> RichTrainingProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self._epochs = self._progress.add_task(f"{self._label} epochs", total=epochs, info="")
        self._steps = self._progress.add_task("steps", total=steps_per_epoch, info="")

    def step(self, loss: float, peak_bytes: int) -> None:
        from rece_bench.memory import format_bytes

        info = f"loss {loss:.4f}  peak {format_bytes(peak_bytes)}"
        self._progress.update(self._steps, advance=1, info=info)

    def epoch(self, epoch: int, train_loss: float, valid_ndcg: float) -> None:
        info = f"loss {train_loss:.4f}  valid NDCG@10 {valid_ndcg:.4f}"
        self._progress.update(self._epochs, completed=epoch, info=info)
        self._progress.reset(self._steps)


def _train_and_show(config, data_dir: Path | None, results_dir: Path | None):
    from rece_bench.paths import data_root, results_root
    from rece_bench.train import train_run

    with RichTrainingProgress(config.loss) as progress:
        try:
            return train_run(config, data_root(data_dir), results_root(results_dir), progress)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted:[/] the result was saved with status 'interrupted'")
            raise typer.Exit(code=130) from None


@app.command()
def run(
    dataset: Annotated[
        str, typer.Option(help="A prepared dataset (see `rece-bench prepare`).")
    ] = "synthetic",
    loss: Annotated[str, typer.Option(help="A loss name (see `rece-bench losses`).")] = "ce",
    param: ParamOption = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 300,
    patience: Annotated[
        int, typer.Option(help="Stop after this many epochs without a better valid NDCG@10.")
    ] = 10,
    batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 128,
    max_len: Annotated[int, typer.Option(help="Maximum sequence length.")] = 200,
    dim: Annotated[int, typer.Option(help="Hidden size.")] = 64,
    blocks: Annotated[int, typer.Option(help="Transformer blocks.")] = 2,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 1,
    dropout: Annotated[float, typer.Option(help="Dropout rate.")] = 0.3,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1235,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Train SASRec with one loss; report test quality, peak memory and training time."""
    from rece_bench.config import TrainConfig

    with user_errors():
        config = TrainConfig(
            dataset=dataset, loss=loss, loss_params=parse_params(param), epochs=epochs, patience=patience,
            batch_size=batch_size, max_len=max_len, dim=dim, n_blocks=blocks, n_heads=heads, dropout=dropout,
            lr=lr, seed=seed, device=check_device(device),
        )  # fmt: skip
        result = _train_and_show(config, data_dir, results_dir)
    _show_rows([result.to_row()], title=f"{dataset}: {loss}")


def _show_rows(rows: list[dict], title: str) -> None:
    from rece_bench.report import results_frame, rich_table

    console.print(rich_table(results_frame(rows), title=title))


@app.command()
def report(
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv or markdown.")] = "table",
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,  # noqa: UP045
    results_dir: ResultsDirOption = None,
) -> None:
    """Show every saved run: quality, peak memory, training time, status."""
    from rece_bench.paths import results_root
    from rece_bench.report import FORMATS, render_text, results_frame, rich_table
    from rece_bench.results import read_results

    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = results_root(results_dir)
    frame = results_frame(read_results(root), dataset)
    if fmt == "table":
        if frame.empty:
            console.print(f"no results under {root}: run `rece-bench run` first")
            return
        console.print(rich_table(frame))
        return
    typer.echo(render_text(frame, fmt), nl=False)


@app.command()
def version() -> None:
    """Print the package version."""
    from rece_bench import __version__

    typer.echo(__version__)
