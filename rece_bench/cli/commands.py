"""Core commands: run, report, demo (the training path)."""

from __future__ import annotations

import ast
import contextlib
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from rece_bench.cli import app
from rece_bench.cli.common import DataDirOption, ResultsDirOption, console, fail, user_errors
from rece_bench.errors import UserError

ParamOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option("--param", "-p", help="A loss parameter as KEY=VALUE, repeatable (e.g. -p n_extra_chunks=3)."),
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


@contextlib.contextmanager
def sigterm_as_interrupt():
    """A `kill` (SIGTERM) ends a run like Ctrl-C does: result saved as 'interrupted', checkpoint kept for --resume."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train_and_show(config, data_dir: Path | None, results_dir: Path | None, resume: bool = False):
    from rece_bench.paths import data_root, results_root
    from rece_bench.train import train_run

    with RichTrainingProgress(config.loss) as progress, sigterm_as_interrupt():
        try:
            return train_run(config, data_root(data_dir), results_root(results_dir), progress, resume=resume)
        except KeyboardInterrupt:
            console.print(
                "[yellow]interrupted:[/] saved with status 'interrupted'; the same command with --resume goes on"
            )
            raise typer.Exit(code=130) from None


OptInt = Optional[int]  # noqa: UP045 - typer reads the annotation at runtime
OptFloat = Optional[float]  # noqa: UP045

# Model and batch defaults when neither an option nor a preset sets them (the paper's SASRec setup).
RUN_DEFAULTS = {"batch_size": 128, "max_len": 200, "dim": 64, "n_blocks": 2, "n_heads": 1, "dropout": 0.3, "lr": 1e-3}


def resolve_run_fields(given: dict, preset: str | None, data_dir: Path | None, dataset: str, loss: str) -> dict:
    """Explicit options win over the preset, the preset over the defaults; --param merges over preset params."""
    fields = dict(RUN_DEFAULTS)
    params: dict = {}
    if preset is not None:
        if preset != "paper":
            raise UserError(f"unknown --preset {preset!r}: the only preset is 'paper'")
        from rece_bench.data.store import read_meta
        from rece_bench.paths import data_root
        from rece_bench.presets import paper_preset

        chosen = paper_preset(read_meta(data_root(data_dir), dataset)["dataset"], loss)
        params = chosen.pop("loss_params")
        fields.update(chosen)
    fields.update({key: value for key, value in given.items() if value is not None and key != "loss_params"})
    fields["loss_params"] = {**params, **given.get("loss_params", {})}
    return fields


@app.command()
def run(
    dataset: Annotated[str, typer.Option(help="A prepared dataset (see `rece-bench prepare`).")] = "synthetic",
    loss: Annotated[str, typer.Option(help="A loss name (see `rece-bench losses`).")] = "ce",
    param: ParamOption = None,
    preset: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="'paper': the authors' best configuration for this dataset and loss."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 300,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better valid NDCG@10.")] = 10,
    batch_size: Annotated[OptInt, typer.Option(help="Sequences per batch (default 128).")] = None,
    max_len: Annotated[OptInt, typer.Option(help="Maximum sequence length (default 200).")] = None,
    dim: Annotated[OptInt, typer.Option(help="Hidden size (default 64).")] = None,
    blocks: Annotated[OptInt, typer.Option(help="Transformer blocks (default 2).")] = None,
    heads: Annotated[OptInt, typer.Option(help="Attention heads (default 1).")] = None,
    dropout: Annotated[OptFloat, typer.Option(help="Dropout rate (default 0.3).")] = None,
    lr: Annotated[OptFloat, typer.Option(help="Adam learning rate (default 1e-3).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1235,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run of the same configuration.")] = False,
    track_memory_epochs: Annotated[
        int, typer.Option(help="CPU: epochs measured by live-tensor tracking (0 = all; it slows steps ~2x).")
    ] = 1,
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Train SASRec with one loss; report test quality, peak memory and training time."""
    from rece_bench.config import TrainConfig

    with user_errors():
        given = dict(
            batch_size=batch_size, max_len=max_len, dim=dim, n_blocks=blocks, n_heads=heads, dropout=dropout, lr=lr,
            loss_params=parse_params(param),
        )  # fmt: skip
        fields = resolve_run_fields(given, preset, data_dir, dataset, loss)
        config = TrainConfig(
            dataset=dataset, loss=loss, epochs=epochs, patience=patience, seed=seed, device=check_device(device),
            track_memory_epochs=track_memory_epochs, **fields,
        )  # fmt: skip
        result = _train_and_show(config, data_dir, results_dir, resume)
    _show_rows([result.to_row()], title=f"{dataset}: {loss}")
    if result.status != "ok":
        console.print(f"[yellow]status {result.status}:[/] {result.message}")


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
def demo(
    epochs: Annotated[int, typer.Option(help="Maximum epochs per loss.")] = 25,
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """The main job on the embedded default: a small synthetic set, SASRec with full CE, and popularity for scale."""
    from rece_bench.demo import DemoConfig, run_demo
    from rece_bench.paths import data_root, results_root

    with user_errors():
        config = DemoConfig(data_root(data_dir), results_root(results_dir), epochs=epochs)
        sizes = f"{config.users:,} users, {config.items:,} items, {config.interactions:,} interactions"
        console.print(f"[bold]demo:[/] synthetic, {sizes}; losses: {', '.join(config.losses)}")
        try:
            results = run_demo(config, RichTrainingProgress)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None
    _show_rows([r.to_row() for r in results], title="demo: test metrics on the synthetic set")
    _show_ratio(results)


def _show_ratio(results) -> None:
    base = next((r for r in results if r.loss == "popularity"), None)
    if base is None or not base.metrics.get("ndcg@10"):
        return
    for r in results:
        if r.loss != "popularity" and r.metrics:
            ratio = r.metrics["ndcg@10"] / base.metrics["ndcg@10"]
            console.print(f"SASRec-{r.loss} test NDCG@10 is {ratio:.1f}x the popularity ranking's.")


@app.command()
def version() -> None:
    """Print the package version."""
    from rece_bench import __version__

    typer.echo(__version__)
