"""Core commands: run, report, demo (the training path)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from rece_bench.bench.demo import DemoConfig
from rece_bench.budget.sizes import format_size
from rece_bench.cli.common import (
    BudgetOption,
    DataDirOption,
    GridOption,
    OptFloat,
    OptInt,
    ParamOption,
    PrecisionOption,
    ResultsDirOption,
    ThreadsOption,
    console,
    default_of,
    err_console,
    parse_params,
    print_table,
    resolved_device,
    user_errors,
)
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.threads import job_threads


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


def _train_and_show(config, data_dir: Path | None, results_dir: Path | None, resume: bool = False, restart=False):
    from rece_bench.paths import data_root, results_root
    from rece_bench.training.driver import train_run

    with RichTrainingProgress(config.loss) as progress:  # SIGTERM is Ctrl-C in every command (rece_bench.signals)
        try:
            root = results_root(results_dir)
            return train_run(config, data_root(data_dir), root, progress, resume=resume, restart=restart)
        except KeyboardInterrupt as exc:
            _say_interrupted(exc)


def _say_interrupted(exc: KeyboardInterrupt) -> NoReturn:
    """What the saved result says about going on (a Ctrl-C outside training saved nothing new)."""
    result = getattr(exc, "result", None)
    saved = f"saved with status interrupted: {result.message}" if result is not None else "nothing new was saved"
    console.print(f"[yellow]interrupted:[/] {saved}", highlight=False)
    raise typer.Exit(code=130) from None


def _default(name: str) -> str:
    return f"(default {default_of(TrainConfig, name)!r})"


def run(
    dataset: Annotated[str, typer.Option(help="A prepared dataset (see `rece-bench prepare`).")] = "synthetic",
    loss: Annotated[str, typer.Option(help="A loss name (see `rece-bench losses`).")] = default_of(TrainConfig, "loss"),
    param: ParamOption = None,
    preset: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="'paper': the authors' best configuration for this dataset and loss."),
    ] = None,
    epochs: Annotated[OptInt, typer.Option(help=f"Maximum epochs {_default('epochs')}.")] = None,
    patience: Annotated[
        OptInt, typer.Option(help=f"Stop after this many epochs without a better valid NDCG@10 {_default('patience')}.")
    ] = None,
    batch_size: Annotated[OptInt, typer.Option(help=f"Sequences per batch {_default('batch_size')}.")] = None,
    max_len: Annotated[OptInt, typer.Option(help=f"Maximum sequence length {_default('max_len')}.")] = None,
    dim: Annotated[OptInt, typer.Option(help=f"Hidden size {_default('dim')}.")] = None,
    blocks: Annotated[OptInt, typer.Option(help=f"Transformer blocks {_default('n_blocks')}.")] = None,
    heads: Annotated[OptInt, typer.Option(help=f"Attention heads {_default('n_heads')}.")] = None,
    dropout: Annotated[OptFloat, typer.Option(help=f"Dropout rate {_default('dropout')}.")] = None,
    lr: Annotated[OptFloat, typer.Option(help=f"Adam learning rate {_default('lr')}.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = default_of(TrainConfig, "seed"),
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = default_of(TrainConfig, "device"),
    precision: PrecisionOption = default_of(TrainConfig, "precision"),
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run of the same configuration.")] = False,
    restart: Annotated[
        bool, typer.Option(help="Train again from scratch a run that finished or left a checkpoint (it is replaced).")
    ] = False,
    track_memory_epochs: Annotated[
        int, typer.Option(help="CPU: epochs measured by live-tensor tracking (0 = all; it slows steps ~2x).")
    ] = default_of(TrainConfig, "track_memory_epochs"),
    budget: BudgetOption = None,
    grid: GridOption = None,
    threads: ThreadsOption = None,
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Train SASRec with one loss; report test quality, peak memory and training time.

    With --budget, the preferred configuration of the loss that fits the budget (its batch size and grid knobs) is
    chosen by probing a few real training steps per candidate (see `rece_bench.budget`), then trained.
    """
    with user_errors():
        given = dict(
            epochs=epochs, patience=patience, batch_size=batch_size, max_len=max_len, dim=dim, n_blocks=blocks,
            n_heads=heads, dropout=dropout, lr=lr, loss_params=parse_params(param),
        )  # fmt: skip
        from rece_bench.paths import data_root
        from rece_bench.presets import run_fields

        fields = run_fields(given, preset, data_root(data_dir), dataset, loss)
        config = TrainConfig(
            dataset=dataset, loss=loss, seed=seed, device=resolved_device(device), precision=precision,
            track_memory_epochs=track_memory_epochs, threads=job_threads(threads), **fields,
        )  # fmt: skip
        _refuse_unavailable(config)
        if budget is None:
            result = _train_and_show(config, data_dir, results_dir, resume, restart)
        else:
            result = _train_within_budget(config, budget, grid, given, data_dir, results_dir, (resume, restart))
    _show_outcome(result)


def _refuse_unavailable(config: TrainConfig) -> None:
    """A loss that cannot run here is refused before data is loaded or a probe is run (``session.build_loss_for``
    checks again for every other caller)."""
    from rece_bench.losses.base import check_available

    check_available(config.loss, config.device, config.precision)


def _show_outcome(result) -> None:
    _show_rows([result.to_row()], title=f"{result.dataset}: {result.loss}")
    if result.status != "ok":
        console.print(f"[yellow]status {result.status}:[/] {result.message}")


def _train_within_budget(config, budget: str, grid: Path | None, given: dict, data_dir, results_dir, again):
    """Choose by probing, train, and say what was chosen, what it measured and what probing cost. ``again``:
    (resume, restart)."""
    import functools

    from rece_bench.budget.fit import train_within_budget
    from rece_bench.budget.ladder import read_grid
    from rece_bench.budget.plan import Budget, check_not_chosen
    from rece_bench.budget.sizes import format_size, parse_size
    from rece_bench.memory import format_bytes
    from rece_bench.paths import data_root, results_root
    from rece_bench.training.driver import train_run

    budget_bytes = parse_size(budget)
    ladders = read_grid(grid) if grid is not None else None
    check_not_chosen(config.loss, ladders, given["loss_params"], given.get("batch_size"))
    console.print(f"probing {config.loss} candidates for a budget of {format_size(budget_bytes)}")
    with RichTrainingProgress(config.loss) as progress:
        try:
            done = train_within_budget(
                config,
                Budget(budget_bytes, ladders),
                data_root(data_dir),
                results_root(results_dir),
                progress,
                again[0],
                trainer=functools.partial(train_run, restart=again[1]),
            )
        except KeyboardInterrupt as exc:
            _say_interrupted(exc)
    choice, result = done.choice, done.result
    console.print(
        f"budget {format_size(budget_bytes)}: chose {choice.candidate.label()} (probed peak "
        f"{format_bytes(choice.peak_bytes)}, training peak {format_bytes(result.peak_bytes)}); "
        f"{len(choice.probes)} probes in {choice.probe_time_s:.1f} s = {100 * done.probe_ratio:.1f}% of training"
    )
    return result


def _show_rows(rows: list[dict], title: str) -> None:
    from rece_bench.report.render import rich_table
    from rece_bench.report.tables import results_frame

    print_table(rich_table(results_frame(rows), title=title))


def report(
    fmt: Annotated[
        str, typer.Option("--format", help="table, markdown or latex (Table 2 and fronts); csv or json (the runs).")
    ] = "table",
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,  # noqa: UP045
    budget: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Table 2 within this budget only (default: one table per budget of the runs)."),
    ] = None,
    plot: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Also draw the Pareto fronts (Figure 4 analogue) into this PNG file."),
    ] = None,
    runs: Annotated[bool, typer.Option(help="Table format: also list every run.")] = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """Per dataset: the paper's Table 2 (best configuration of each loss within a budget) and the Pareto fronts."""
    from rece_bench.paths import results_root
    from rece_bench.report.render import FORMATS, render_text, rich_sections, rich_table
    from rece_bench.report.tables import report_sections, results_frame
    from rece_bench.results import load_results

    with user_errors():
        if fmt not in FORMATS:
            raise UserError(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
        budget_bytes = _parse_budget(budget)
        root = results_root(results_dir)
        found = load_results(root)
        _warn_unreadable(found.unreadable)
        frame = results_frame(found.rows, dataset)
        if frame.empty and fmt in ("table", "markdown", "latex"):
            console.print(f"no results under {root}: run `rece-bench run` or `rece-bench sweep` first")
            return
        if plot is not None:
            from rece_bench.report.plot import plot_fronts

            plot_fronts(frame, plot)
        if fmt == "table":
            for table in rich_sections(report_sections(frame, budget_bytes)):
                print_table(table)
            if runs:
                print_table(rich_table(frame))
        else:
            typer.echo(render_text(frame, fmt, budget_bytes), nl=False)
    if plot is not None:  # on stderr unless the report is the Rich table: stdout stays machine-readable
        (console if fmt == "table" else err_console).print(f"plot written to {plot}", highlight=False)


def _warn_unreadable(damaged: list, shown: int = 5) -> None:
    """On stderr: how many result files could not be read, each named with why (a count past ``shown``)."""
    if not damaged:
        return
    err_console.print(f"[yellow]warning:[/] {len(damaged)} result file(s) could not be read and are left out:")
    for exc in damaged[:shown]:
        err_console.print(f"  {exc.path}: {exc.why}", highlight=False, soft_wrap=True)
    if len(damaged) > shown:
        err_console.print(f"  ... and {len(damaged) - shown} more", highlight=False)


def _parse_budget(budget: str | None) -> int | None:
    from rece_bench.budget.sizes import parse_size

    return None if budget is None else parse_size(budget)


def demo(
    epochs: Annotated[int, typer.Option(help="Maximum epochs per loss.")] = default_of(DemoConfig, "epochs"),
    budget: Annotated[
        str, typer.Option(help="The memory budget every loss must fit ('none': no budget).")
    ] = format_size(default_of(DemoConfig, "budget_bytes")).replace(" ", ""),
    threads: ThreadsOption = None,
    precision: PrecisionOption = default_of(DemoConfig, "precision"),
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """The main job on the embedded default: CE, CE- and RECE fitted to one small memory budget on a synthetic set,
    shown as the paper's Table 2 and Pareto fronts, with popularity for scale."""
    from rece_bench.bench.demo import run_demo
    from rece_bench.paths import data_root, results_root

    with user_errors():
        budget_bytes = None if budget.lower() == "none" else _parse_budget(budget)
        config = DemoConfig(
            data_root(data_dir), results_root(results_dir), epochs=epochs, budget_bytes=budget_bytes,
            precision=precision, threads=job_threads(threads),
        )  # fmt: skip
        sizes = f"{config.users:,} users, {config.items:,} items, {config.interactions:,} interactions"
        console.print(
            f"[bold]demo:[/] synthetic, {sizes}; losses: {', '.join(config.losses)}; budget {budget}; "
            f"precision {config.precision}"
        )
        try:
            runs = run_demo(config, RichTrainingProgress)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None
    _show_choices(runs)
    _show_report([run.result.to_row() for run in runs])
    _show_ratio([run.result for run in runs])


def _show_choices(runs) -> None:
    from rece_bench.memory import format_bytes

    for run in runs:
        if run.choice is not None:
            choice, result = run.choice, run.result
            console.print(
                f"{result.loss}: chose {choice.candidate.label()} after {len(choice.probes)} probes "
                f"({choice.probe_time_s:.1f} s); probed peak {format_bytes(choice.peak_bytes)}, training peak "
                f"{format_bytes(result.peak_bytes)}, status {result.status}"
            )


def _show_report(rows: list[dict]) -> None:
    from rece_bench.report.render import rich_sections
    from rece_bench.report.tables import report_sections, results_frame

    for table in rich_sections(report_sections(results_frame(rows))):
        print_table(table)


def _show_ratio(results) -> None:
    base = next((r for r in results if r.loss == "popularity"), None)
    if base is None or not base.metrics.get("ndcg@10"):
        return
    for r in results:
        if r.loss != "popularity" and r.metrics:
            ratio = r.metrics["ndcg@10"] / base.metrics["ndcg@10"]
            console.print(f"SASRec-{r.loss} test NDCG@10 is {ratio:.1f}x the popularity ranking's.")


def version() -> None:
    """Print the package version."""
    from rece_bench import __version__

    typer.echo(__version__)
