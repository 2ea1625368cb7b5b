"""The sweep command: every (loss, budget, seed) of a grid, restartable."""

from __future__ import annotations

import shlex
from typing import Annotated, Optional

import typer

from rece_bench.cli.common import (
    DataDirOption,
    GridOption,
    OptFloat,
    OptInt,
    PrecisionOption,
    ResultsDirOption,
    ThreadsOption,
    console,
    default_of,
    print_table,
    resolved_device,
    user_errors,
)
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.threads import job_threads


class RichSweepProgress:
    """One bar over the sweep (done, running, failed, ETA), and the epochs and steps of a job that runs here."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            _eta_column(),
            console=console,
        )
        self._jobs = self._epochs = self._steps = None
        self._skipped = self._started = self._done = self._failed = 0

    def __enter__(self) -> RichSweepProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def begin(self, total: int, skipped: int) -> None:
        self._skipped = skipped
        self._jobs = self._progress.add_task("jobs", total=total, completed=skipped, info="", done=0, last_done_s=0.0)
        self._show_counts()

    def job_started(self, job) -> None:
        self._started += 1
        self._show_counts()

    def job_done(self, job, result) -> None:
        from rece_bench.memory import format_bytes

        self._done += 1
        self._failed += result.status == "failed"
        ndcg = result.metrics.get("ndcg@10")
        shown = f"NDCG@10 {ndcg:.4f}" if ndcg is not None else f"{result.status} {result.message}".strip()
        self._progress.console.print(f"{job.label()}: {shown}, peak {format_bytes(result.peak_bytes)}")
        elapsed = self._progress.tasks[self._jobs].elapsed or 0.0
        self._progress.update(self._jobs, advance=1, done=self._done, last_done_s=elapsed)
        self._show_counts()
        for task in (self._epochs, self._steps):
            if task is not None:
                self._progress.remove_task(task)
        self._epochs = self._steps = None

    def _show_counts(self) -> None:
        counts = f"{self._done} done, {self._started - self._done} running, {self._failed} failed"
        before = f" ({self._skipped} done before)" if self._skipped else ""
        self._progress.update(self._jobs, info=counts + before)

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self._epochs = self._progress.add_task("  epochs", total=epochs, info="")
        self._steps = self._progress.add_task("  steps", total=steps_per_epoch, info="")

    def step(self, loss: float, peak_bytes: int) -> None:
        from rece_bench.memory import format_bytes

        self._progress.update(self._steps, advance=1, info=f"loss {loss:.4f}  peak {format_bytes(peak_bytes)}")

    def epoch(self, epoch: int, train_loss: float, valid_ndcg: float) -> None:
        self._progress.update(self._epochs, completed=epoch, info=f"valid NDCG@10 {valid_ndcg:.4f}")
        self._progress.reset(self._steps)


def _eta_column():
    """Time left for the jobs bar at this session's pace so far (jobs done over their wall time), counting down."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SweepEta(ProgressColumn):
        def render(self, task) -> Text:
            done = task.fields.get("done", 0)
            if task.description != "jobs" or not done or task.remaining is None:
                return Text("")
            pace_s = task.fields["last_done_s"] / done
            left_s = max(0.0, pace_s * task.remaining - ((task.elapsed or 0.0) - task.fields["last_done_s"]))
            return Text(f"ETA {_clock(left_s)}" if task.remaining else "", style="progress.remaining")

    return SweepEta()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def summary_table(summary):
    """The jobs run now, in the order they finished: status, quality, peak memory and training time."""
    from rich.table import Table

    from rece_bench.memory import format_bytes

    table = Table(title=f"sweep: {len(summary.runs)} jobs run now", title_justify="left")
    for column, justify in (("job", "left"), ("status", "left"), ("NDCG@10", "right"), ("peak", "right"),
                            ("train time", "right"), ("message", "left")):  # fmt: skip
        table.add_column(column, justify=justify)
    for job, result in summary.runs:
        ndcg = result.metrics.get("ndcg@10")
        style = None if result.status == "ok" else "yellow"
        table.add_row(
            job.label(), result.status, f"{ndcg:.4f}" if ndcg is not None else "-", format_bytes(result.peak_bytes),
            f"{result.train_time_s:.1f} s", result.message, style=style,
        )  # fmt: skip
    return table


def paper_seeds(count: int) -> tuple[int, ...]:
    from rece_bench.sweep.grid import PAPER_SEEDS

    if not 1 <= count <= len(PAPER_SEEDS):
        raise UserError(f"--seeds {count}: the paper's seeds are {PAPER_SEEDS}: pass --seeds 1, 2 or 3")
    return PAPER_SEEDS[:count]


ENGINES = ("local", "ray")


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
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (--engine ray: cpu or cuda).")] = default_of(
        TrainConfig, "device"
    ),
    precision: PrecisionOption = default_of(TrainConfig, "precision"),
    engine: Annotated[
        str, typer.Option(help="local: one job after another here; ray: Ray tasks, on this machine or a cluster.")
    ] = "local",
    address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(envvar="RAY_ADDRESS", help="--engine ray: a running cluster (HEAD:6379); none: start one here."),
    ] = None,
    cpus_per_job: Annotated[int, typer.Option(help="--engine ray: CPUs per job, and its torch threads.")] = 1,
    gpus_per_job: Annotated[
        OptFloat, typer.Option(help="--engine ray: GPUs per job (default 1 with --device cuda; 0.5 puts two on a GPU).")
    ] = None,
    retries: Annotated[int, typer.Option(help="--engine ray: retries of a job whose worker or node dies.")] = 1,
    threads: ThreadsOption = None,
    workers: Annotated[OptInt, typer.Option(hidden=True)] = None,  # gone: see the error it gives
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Run a grid of losses, budgets and seeds; skips what is done, so the same command resumes a stopped sweep."""
    from rece_bench.paths import data_root, results_root
    from rece_bench.sweep.grid import run_sweep

    with user_errors():
        _refuse_workers(workers)
        runner = sweep_engine(engine, address, cpus_per_job, gpus_per_job, retries)
        device = resolved_device(device) if runner is None else device  # a Ray cluster's GPUs need not be here
        threads = job_threads(threads, cpus_per_job if runner is not None else 1)  # one policy, both engines
        base = TrainConfig(
            dataset=dataset, epochs=epochs, patience=patience, max_len=max_len, device=device, precision=precision,
            threads=threads,
        )  # fmt: skip
        config = _sweep_config(base, loss, budget, seeds, grid)
        try:
            with RichSweepProgress() as progress:
                summary = run_sweep(config, data_root(data_dir), results_root(results_dir), progress, engine=runner)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted:[/] the same command goes on with what is missing")
            raise typer.Exit(code=130) from None
    _show_summary(summary, dataset, results_dir)


def _refuse_workers(workers: int | None) -> None:
    if workers is not None:
        raise UserError(
            f"--workers {workers} is gone: run jobs side by side with --engine ray (one per GPU with --device "
            "cuda, or per --cpus-per-job CPUs)"
        )


def _sweep_config(base: TrainConfig, losses: list[str], budgets: list[str] | None, seeds: int, grid):
    from rece_bench.budget.ladder import read_grid
    from rece_bench.budget.sizes import parse_size
    from rece_bench.sweep.grid import SweepConfig

    return SweepConfig(
        base=base, losses=tuple(losses), budgets_bytes=tuple(parse_size(b) for b in budgets or []),
        seeds=paper_seeds(seeds), grid=read_grid(grid) if grid is not None else {},
    )  # fmt: skip


def _show_summary(summary, dataset: str, results_dir) -> None:
    if summary.runs:
        print_table(summary_table(summary))
    failed = sum(result.status == "failed" for result in summary.results)
    pace = f" ({len(summary.runs) / summary.wall_time_s * 60:.2f} jobs/min)" if summary.runs else ""
    console.print(
        f"sweep: {summary.planned} runs planned, {summary.skipped} already done, {len(summary.results)} run now"
        f"{f' ({failed} failed)' if failed else ''} in {summary.wall_time_s:.1f} s{pace}; "
        f"see `{report_hint(dataset, results_dir)}`",
        soft_wrap=True,  # one line, so that the hint copies whole
    )


def sweep_engine(engine: str, address, cpus_per_job: int, gpus_per_job, retries: int):
    """None for the local engine (no Ray import); a RayEngine for ray."""
    if engine not in ENGINES:
        raise UserError(f"unknown --engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "local":
        return None
    from rece_bench.sweep.ray_engine import RayEngine

    return RayEngine(address=address, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job, retries=retries)


def report_hint(dataset: str, results_dir) -> str:
    """The report command for this sweep's results (the data root plays no part in a report)."""
    where = f" --results-dir {shlex.quote(str(results_dir))}" if results_dir is not None else ""
    return f"rece-bench report --dataset {shlex.quote(dataset)}{where}"
