"""Whole-training-step benchmark: forward, loss, backward and Adam of SASRec on a prepared dataset.

Every configuration sees the same batches (one batch order, drawn once). Reported per configuration: the median step
time (and every measured step's, for the spread), positions per second, the peak of memory in one step (tracked
live tensor bytes on CPU, the allocator's peak on CUDA; model, optimiser state and inputs included), and the share
of a step spent building the batch and drawing negatives, timed apart from the step. Benchmarks report; tests check
correctness.

With ``ops``, one more step runs under ``opcount.count_ops`` (the aten ops of forward, loss, backward and Adam: a
GPU's kernel launches, and the data-dependent ops among them); with ``profile_dir``, one more under the torch
profiler, its table written to a file per configuration. Neither is timed.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from rece_bench.config import TrainConfig, check_max_len, positive_int
from rece_bench.data.loader import TrainBatch, iterate_batches, load_run_data
from rece_bench.errors import UserError
from rece_bench.losses.base import check_available
from rece_bench.memory import PeakMemory
from rece_bench.threads import DEFAULT_THREADS, check_threads, with_config_threads
from rece_bench.training.session import build_run
from rece_bench.training.step import loss_inputs, train_step


@dataclass(frozen=True)
class StepBenchConfig:
    dataset: str
    data_root: Path
    configs: tuple[tuple[str, dict[str, Any]], ...]  # (loss name, loss params)
    batch_size: int = 32
    max_len: int = 200
    dim: int = 64
    steps: int = 3
    warmup: int = 1
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # autocast of the forward and the loss, as `run --precision` trains
    threads: int = DEFAULT_THREADS  # torch's intra-op threads (rece_bench.threads)
    ops: bool = False  # count the aten ops of one step
    profile_dir: Path | None = None  # write the profiler's table of one step here, a file per configuration

    def __post_init__(self) -> None:
        from rece_bench.device import precision_of

        precision_of(self.precision)
        check_threads(self.threads)
        if not self.configs:
            raise UserError("no loss configuration to benchmark: pass --config ce (repeatable)")
        for name in ("batch_size", "max_len", "dim", "steps"):
            positive_int("bench-step", name, getattr(self, name))
        check_max_len("bench-step", self.max_len)
        if self.warmup < 0:
            raise UserError(f"warmup must be >= 0, got {self.warmup}")
        for loss, _ in self.configs:  # before any data is loaded or any configuration measured
            check_available(loss, self.device, self.precision)


@dataclass(frozen=True)
class StepBenchRow:
    dataset: str
    loss: str
    params: dict[str, Any]
    num_items: int
    batch_size: int
    positions: float  # mean non-pad positions per step
    step_time_s: float  # median over the measured steps
    positions_per_s: float
    peak_bytes: int
    data_time_s: float  # median time to build one batch
    sampling_time_s: float  # median time to draw one step's negatives (0 for losses without a sampler)
    device: str
    step_times_s: tuple[float, ...]  # every measured step, in order: the spread behind the median
    precision: str = "fp32"
    ops: dict[str, Any] | None = None  # ``OpCount.to_dict()`` of one step, with ``ops``
    profile_path: str | None = None  # the profiler's table of one step, with ``profile_dir``

    @property
    def data_share(self) -> float:
        return (self.data_time_s + self.sampling_time_s) / self.step_time_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "data_share": self.data_share}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def _fixed_batches(data, config: StepBenchConfig) -> tuple[list[TrainBatch], list[float]]:
    """The first warmup + steps + 1 batches of one seeded order, and the time each took to build."""
    iterator = iterate_batches(data.train, config.batch_size, torch.Generator().manual_seed(config.seed))
    batches, times = [], []
    for _ in range(config.warmup + config.steps + 1):
        batch, seconds = _timed(lambda: next(iterator, None))
        if batch is None:
            break
        batches.append(batch)
        times.append(seconds)
    return batches, times


def _sampling_time(loss_fn: torch.nn.Module, model, batch: TrainBatch, device: Any) -> float:
    """Time of the loss's own negative sampler on this batch, 0 when it has none."""
    sampler = getattr(loss_fn, "sample_negatives", None)
    if sampler is None:
        return 0.0
    with torch.no_grad():
        _, targets, loss_batch = loss_inputs(model, batch, device)
    names = inspect.signature(sampler).parameters
    kwargs = {key: value for key, value in (("targets", targets), ("batch", loss_batch)) if key in names}
    return _timed(lambda: sampler(**kwargs))[1]


def bench_one(config: StepBenchConfig, data, batches, build_times, loss: str, params: dict) -> StepBenchRow:
    train_config = TrainConfig(
        dataset=config.dataset, loss=loss, loss_params=params, batch_size=config.batch_size,
        max_len=config.max_len, dim=config.dim, device=config.device, precision=config.precision, seed=config.seed,
    )  # fmt: skip
    run = build_run(train_config, data)  # seeded with config.seed
    model, optimizer, loss_fn, device = run.model, run.optimizer, run.loss_fn, run.device

    def step(batch: TrainBatch) -> float:
        return train_step(model, loss_fn, optimizer, batch, run.compute, run.scaler)

    for batch in batches[: config.warmup]:
        step(batch)
    measured = batches[config.warmup : config.warmup + config.steps]
    step_times = [_timed(lambda b=b: step(b))[1] for b in measured]
    sampling = [_sampling_time(loss_fn, model, b, device) for b in measured]
    meter = PeakMemory(run.compute, track=(model, optimizer))
    with meter:
        step(batches[-1])
    launch = launch_stats(config, lambda: step(batches[-1]), run.compute.device.type, loss, params)
    positions = statistics.mean(float((b.inputs != 0).sum()) for b in measured)
    step_s = statistics.median(step_times)
    return StepBenchRow(
        config.dataset, loss, dict(params), data.num_items, config.batch_size, positions, step_s,
        positions / step_s, meter.stats.peak_bytes, statistics.median(build_times), statistics.median(sampling),
        str(device), tuple(step_times), config.precision, **launch,
    )  # fmt: skip


def launch_stats(
    config: StepBenchConfig, step: Callable[[], Any], device_type: str, loss: str, params: dict
) -> dict[str, Any]:
    """What ``ops`` and ``profile_dir`` ask for, each from one more (untimed) step."""
    from rece_bench.opcount import count_ops, write_profile

    out: dict[str, Any] = {}
    if config.ops:
        out["ops"] = count_ops(step)[1].to_dict()
    if config.profile_dir is not None:
        label = "-".join([loss, *(f"{key}{value}" for key, value in params.items())])
        path = Path(config.profile_dir) / f"bench-step-{config.dataset}-{label}.txt"
        title = (
            f"bench-step {config.dataset}, {loss} {params}, batch {config.batch_size}, max_len {config.max_len}, "
            f"{config.precision}"
        )
        out["profile_path"] = str(write_profile(step, path, device_type, title))
    return out


@with_config_threads
def run_step_benchmark(
    config: StepBenchConfig, on_row: Callable[[StepBenchRow], None] | None = None
) -> list[StepBenchRow]:
    """Benchmark every (loss, params) of ``config`` on the same batches; ``on_row`` sees each row as it lands."""
    data = load_run_data(config.data_root, config.dataset, config.max_len)
    batches, build_times = _fixed_batches(data, config)
    if len(batches) < config.warmup + config.steps + 1:
        raise UserError(
            f"{config.dataset} gives only {len(batches)} batches of {config.batch_size}: lower --steps or --batch-size"
        )
    rows = []
    for loss, params in config.configs:
        row = bench_one(config, data, batches, build_times, loss, params)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
