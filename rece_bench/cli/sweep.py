"""The sweep command: every (loss, budget, seed) of a grid, restartable."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rece_bench.cli.common import (
    DataDirOption,
    GridOption,
    ResultsDirOption,
    check_device,
    console,
    default_of,
    user_errors,
)
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError


class RichSweepProgress:
    """A jobs bar over the sweep, and the epochs and steps of the job that runs."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._jobs = self._epochs = self._steps = None

    def __enter__(self) -> RichSweepProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def begin(self, total: int, skipped: int) -> None:
        info = f"{skipped} already done" if skipped else ""
        self._jobs = self._progress.add_task("jobs", total=total, completed=skipped, info=info)

    def job_started(self, job) -> None:
        self._progress.update(self._jobs, info=job.label())

    def job_done(self, job, result) -> None:
        from rece_bench.memory import format_bytes

        ndcg = result.metrics.get("ndcg@10")
        shown = f"NDCG@10 {ndcg:.4f}" if ndcg is not None else result.status
        self._progress.console.print(f"{job.label()}: {shown}, peak {format_bytes(result.peak_bytes)}")
        self._progress.update(self._jobs, advance=1)
        for task in (self._epochs, self._steps):
            if task is not None:
                self._progress.remove_task(task)
        self._epochs = self._steps = None

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self._epochs = self._progress.add_task("  epochs", total=epochs, info="")
        self._steps = self._progress.add_task("  steps", total=steps_per_epoch, info="")

    def step(self, loss: float, peak_bytes: int) -> None:
        from rece_bench.memory import format_bytes

        self._progress.update(self._steps, advance=1, info=f"loss {loss:.4f}  peak {format_bytes(peak_bytes)}")

    def epoch(self, epoch: int, train_loss: float, valid_ndcg: float) -> None:
        self._progress.update(self._epochs, completed=epoch, info=f"valid NDCG@10 {valid_ndcg:.4f}")
        self._progress.reset(self._steps)


def paper_seeds(count: int) -> tuple[int, ...]:
    from rece_bench.sweep import PAPER_SEEDS

    if not 1 <= count <= len(PAPER_SEEDS):
        raise UserError(f"--seeds {count}: the paper's seeds are {PAPER_SEEDS}: pass --seeds 1, 2 or 3")
    return PAPER_SEEDS[:count]


def sweep(
    dataset: Annotated[str, typer.Option(help="A prepared dataset (see `rece-bench prepare`).")],
    loss: Annotated[list[str], typer.Option(help="A loss to sweep, repeatable: --loss ce --loss rece.")],
    budget: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="A memory budget, repeatable (512MB, 2GB, 2GiB, 1.5e9); none: every grid candidate."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="How many of the paper's seeds (1235, 37, 2451) to run.")] = 1,
    grid: GridOption = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs per run.")] = default_of(TrainConfig, "epochs"),
    patience: Annotated[
        int, typer.Option(help="Stop after this many epochs without a better valid NDCG@10.")
    ] = default_of(TrainConfig, "patience"),
    max_len: Annotated[int, typer.Option(help="Maximum sequence length.")] = default_of(TrainConfig, "max_len"),
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = default_of(TrainConfig, "device"),
    workers: Annotated[int, typer.Option(help="Parallel jobs, one per GPU (CUDA only; CPU runs sequentially).")] = 1,
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Run a grid of losses, budgets and seeds; skips what is done, so the same command resumes a stopped sweep."""
    from rece_bench.budget.ladder import read_grid
    from rece_bench.budget.sizes import parse_size
    from rece_bench.paths import data_root, results_root
    from rece_bench.sweep import SweepConfig, check_workers, run_sweep

    with user_errors():
        device = check_device(device)
        base = TrainConfig(dataset=dataset, epochs=epochs, patience=patience, max_len=max_len, device=device)
        check_workers(workers, device)
        config = SweepConfig(
            base=base, losses=tuple(loss), budgets_bytes=tuple(parse_size(b) for b in budget or []),
            seeds=paper_seeds(seeds), grid=read_grid(grid) if grid is not None else {}, workers=workers,
        )  # fmt: skip
        with RichSweepProgress() as progress:
            try:
                summary = run_sweep(config, data_root(data_dir), results_root(results_dir), progress)
            except KeyboardInterrupt:
                console.print("[yellow]interrupted:[/] the same command goes on with what is missing")
                raise typer.Exit(code=130) from None
    console.print(
        f"sweep: {summary.planned} runs planned, {summary.skipped} already done, {len(summary.results)} run now; "
        f"see `rece-bench report --dataset {dataset}`"
    )
