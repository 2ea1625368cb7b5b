"""The loss benchmark: forward+backward of each loss alone on random data, peak memory and median time.

Peak memory is measured with ``PeakMemory`` (live tensor bytes on CPU, the allocator's peak on CUDA) over the
first run; the inputs (hidden, item_emb, targets, the sampler batch) are live at the window's start and their
gradients are made inside it, so both the peak including the inputs and the peak beyond them are reported.
Time is the median of the remaining runs, outside the tracker (whose per-op hooks slow small ops); with one
repeat it is the tracked run's time. A loss whose estimated need exceeds the free memory, or that cannot run here
(``Loss.unavailable_reason``: a library, a GPU or a precision it needs), is recorded as skipped, not run.

Precision: in bf16 or fp16 the inputs stay float32 parameters-to-be (hidden and item_emb require grad) and the
loss runs under the precision's autocast, not on inputs made in the low dtype. That is what `run --precision`
trains (SASRec's item table is a float32 parameter and the hidden states come out of an autocast forward), so the
time, the peak (the float32 inputs, their gradients and any low-precision copies a loss makes) and the value are
the ones a training step sees; it also exercises the casts a loss must make under autocast, where inputs made in
bf16 would skip them.

With ``ops``, one more forward+backward runs under ``opcount.count_ops``: the aten ops it dispatches (each one a
kernel launch on a GPU, so a CPU can check a GPU's launch cost) and the data-dependent ones (a host
synchronisation on a GPU). With ``profile_dir``, one more under the torch profiler, whose table is written to a
file per loss and catalogue size. Neither run is timed.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rece_bench.errors import UserError
from rece_bench.io import atomic_write_json
from rece_bench.threads import DEFAULT_THREADS, using_threads

log = logging.getLogger(__name__)

BENCH_DIR = "bench-loss"


def all_losses() -> tuple[str, ...]:
    """Every registered loss, in report order."""
    from rece_bench.losses.base import ordered_losses

    return tuple(cls.name for cls in ordered_losses())


@dataclass(frozen=True)
class BenchLossConfig:
    """One benchmark invocation; ``params`` holds (loss, parameter, value) triples already typed."""

    items: tuple[int, ...]
    positions: int = 8192
    dim: int = 64
    losses: tuple[str, ...] = field(default_factory=all_losses)
    params: tuple[tuple[str, str, Any], ...] = ()
    repeats: int = 5
    device: str = "cpu"
    precision: str = "fp32"  # fp32, or autocast to bf16 / fp16 around each loss call (see the module's docstring)
    seed: int = 0
    seq_len: int = 200  # positions per sequence: the samplers' users
    logit_std: float = 2.0  # spread of the random logits <h, e>
    threads: int | None = DEFAULT_THREADS  # torch's intra-op threads (rece_bench.threads); None keeps torch's
    results_dir: Path | None = None
    ops: bool = False  # count the aten ops of one forward+backward (``opcount``)
    profile_dir: Path | None = None  # write the profiler's table of one forward+backward here, a file per row

    def __post_init__(self) -> None:
        from rece_bench.device import precision_of
        from rece_bench.losses import build_loss

        precision_of(self.precision)
        _check_positive("positions", self.positions)
        _check_positive("dim", self.dim)
        _check_positive("repeats", self.repeats)
        _check_positive("seq_len", self.seq_len)
        if self.threads is not None:
            _check_positive("threads", self.threads)
        if not self.items or any(c < 2 for c in self.items):
            raise UserError(f"items must be catalogue sizes >= 2, got {list(self.items)}")
        if not self.losses:
            raise UserError("losses is empty: name at least one loss")
        for name in self.losses:
            build_loss(name, num_items=max(self.items), **_build_args(name, self.params_of(name), self))  # loud
        for name, key, _ in self.params:
            if name not in self.losses:
                raise UserError(f"parameter {name}.{key} given but loss {name!r} is not benchmarked")

    def params_of(self, loss: str) -> dict[str, Any]:
        return {key: value for name, key, value in self.params if name == loss}


@dataclass(frozen=True)
class BenchLossRow:
    loss: str
    num_items: int
    n_positions: int
    dim: int
    params: dict[str, Any]
    device: str
    status: str  # "ok", "skipped" (cannot run here, or estimated need above free memory) or "oom"
    needs_bytes: int
    free_bytes: int | None
    peak_bytes: int | None = None  # inputs and their gradients included
    peak_beyond_inputs_bytes: int | None = None
    inputs_bytes: int | None = None
    median_time_s: float | None = None
    times_s: tuple[float, ...] = ()
    tracked_time_s: float | None = None
    loss_value: float | None = None
    memory_method: str | None = None
    note: str = ""
    precision: str = "fp32"
    ops: dict[str, Any] | None = None  # ``OpCount.to_dict()`` of one forward+backward, with ``ops``
    profile_path: str | None = None  # the profiler's table, with ``profile_dir``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchLossResult:
    rows: tuple[BenchLossRow, ...]
    path: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_items(text: str) -> tuple[int, ...]:
    """'1e4,1e5,1e6' -> (10000, 100000, 1000000); whole numbers only."""
    sizes = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            raise UserError(f"--items takes comma-separated numbers such as 1e4,1e5; got {part.strip()!r}") from None
        if value != int(value) or value < 2:
            raise UserError(f"--items values must be whole numbers >= 2, got {part.strip()!r}")
        sizes.append(int(value))
    return tuple(sizes)


def parse_param(text: str) -> tuple[str, str, Any]:
    """'rece.rounds=8' -> ('rece', 'rounds', 8), the value converted by the parameter's declared type."""
    from rece_bench.losses.base import lookup

    head, sep, raw = text.partition("=")
    name, dot, key = head.strip().partition(".")
    if not sep or not dot or not key:
        raise UserError(f"--param takes LOSS.NAME=VALUE, such as rece.rounds=8; got {text!r}")
    specs = {spec.name: spec for spec in lookup(name).params}
    if key not in specs or specs[key].type.startswith("Generator"):
        settable = ", ".join(k for k, s in specs.items() if not s.type.startswith("Generator")) or "none"
        raise UserError(f"loss {name!r} has no settable parameter {key!r}: its parameters are {settable}")
    return name, key, _convert(key, raw.strip(), specs[key].type)


def _convert(key: str, raw: str, type_name: str) -> Any:
    if raw.lower() == "none" and "None" in type_name:
        return None
    if type_name == "str":  # e.g. ce_chunked.kernel=triton; the loss checks the choice
        return raw
    try:
        number = float(raw)
    except ValueError:
        raise UserError(f"parameter {key} takes a number ({type_name}), got {raw!r}") from None
    if type_name.startswith("int"):
        if number != int(number):
            raise UserError(f"parameter {key} takes a whole number, got {raw!r}")
        return int(number)
    return number


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a whole number >= 1, got {value!r}")


def free_memory_bytes(device: Any) -> int | None:
    """What a new allocation can still get: MemAvailable on Linux, the free device memory on CUDA.

    ``device``: a ``device.Compute`` or a device."""
    from rece_bench.device import compute_for

    compute = compute_for(device)
    if compute.is_cuda:
        return compute.free_bytes()
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # unknown: nothing is skipped


def make_inputs(config: BenchLossConfig, num_items: int, device: Any = None) -> dict[str, Any]:
    """Random float32 hidden (N, D) and item_emb (C, D) requiring grad, targets (N,), and the samplers' batch, on
    ``device`` (a torch.device; default: the config's, resolved). The same in every precision (module docstring)."""
    import torch

    from rece_bench.device import resolve_device
    from rece_bench.losses import LossBatch

    gen = torch.Generator().manual_seed(config.seed)
    n, d = config.positions, config.dim
    hidden = torch.randn(n, d, generator=gen)
    item_emb = torch.randn(num_items, d, generator=gen) * (config.logit_std / d**0.5)  # logit std ~ logit_std
    targets = torch.randint(0, num_items, (n,), generator=gen)
    seq_index = torch.arange(n) // config.seq_len  # (N,)
    n_seqs = int(seq_index[-1]) + 1
    seen = torch.full((n_seqs * config.seq_len,), -1, dtype=torch.long)
    seen[:n] = targets  # each user has seen its own targets
    device = resolve_device(config.device) if device is None else device
    return {
        "hidden": hidden.to(device).requires_grad_(),
        "item_emb": item_emb.to(device).requires_grad_(),
        "targets": targets.to(device),
        "batch": LossBatch(seq_index.to(device), seen.view(n_seqs, config.seq_len).to(device)),  # (B, L)
    }


def _one_step(loss: Any, inputs: dict[str, Any], compute: Any) -> tuple[float, float]:
    """Forward (under the precision's autocast) and backward once; returns (seconds, loss value) and clears the
    gradients. ``compute``: a ``device.Compute``."""
    start = time.perf_counter()
    with compute.autocast():
        value = loss(inputs["hidden"], inputs["item_emb"], inputs["targets"], inputs["batch"])
    value.backward()
    compute.synchronize()
    seconds = time.perf_counter() - start
    inputs["hidden"].grad = None
    inputs["item_emb"].grad = None
    return seconds, float(value.detach())


def bench_one(config: BenchLossConfig, name: str, num_items: int) -> BenchLossRow:
    """One loss at one catalogue size: skipped when it cannot run here or would not fit, else measured."""
    import torch

    from rece_bench.device import compute_for
    from rece_bench.losses import build_loss
    from rece_bench.losses.base import lookup
    from rece_bench.memory import PeakMemory

    compute = compute_for(config.device, config.precision)
    params = config.params_of(name)
    loss = build_loss(name, num_items=num_items, **_build_args(name, params, config, num_items))
    needs = loss.estimate_peak_bytes(config.positions, config.dim)
    free = free_memory_bytes(compute)
    row = {"loss": name, "num_items": num_items, "n_positions": config.positions, "dim": config.dim,
           "params": params, "device": str(compute.device), "precision": config.precision, "needs_bytes": needs,
           "free_bytes": free}  # fmt: skip
    unavailable = lookup(name).unavailable_reason(compute.device, config.precision)
    if unavailable is not None:
        return BenchLossRow(status="skipped", note=f"unavailable: {unavailable}", **row)
    if free is not None and needs > free:
        return BenchLossRow(status="skipped", note=f"skipped (needs {needs / 1e9:.1f} GB)", **row)
    inputs = make_inputs(config, num_items, compute.device)
    tracked = tuple(t for key, t in inputs.items() if key != "batch") + tuple(vars(inputs["batch"]).values())
    try:
        with PeakMemory(compute, track=tracked) as meter:
            tracked_s, value = _one_step(loss, inputs, compute)
        times = [_one_step(loss, inputs, compute)[0] for _ in range(config.repeats - 1)]
    except torch.OutOfMemoryError:
        return BenchLossRow(status="oom", note="out of memory", **row)
    stats = meter.stats
    assert stats is not None
    times = times or [tracked_s]
    return BenchLossRow(
        status="ok", peak_bytes=stats.peak_bytes, peak_beyond_inputs_bytes=stats.peak_delta_bytes,
        inputs_bytes=stats.start_bytes, median_time_s=statistics.median(times), times_s=tuple(times),
        tracked_time_s=tracked_s, loss_value=value, memory_method=stats.method,
        **launch_stats(config, loss, inputs, compute, f"{name}-C{num_items}"), **row,
    )  # fmt: skip


def launch_stats(
    config: BenchLossConfig, loss: Any, inputs: dict[str, Any], compute: Any, label: str
) -> dict[str, Any]:
    """What ``ops`` and ``profile_dir`` ask for, each from one more (untimed) forward+backward under the
    precision's autocast, as timed. ``compute``: a ``device.Compute``."""
    from rece_bench.opcount import count_ops, write_profile

    def step() -> None:  # no value read back: the count is the loss's own
        with compute.autocast():
            value = loss(inputs["hidden"], inputs["item_emb"], inputs["targets"], inputs["batch"])
        value.backward()

    out: dict[str, Any] = {}
    if config.ops:
        out["ops"] = count_ops(step)[1].to_dict()
    if config.profile_dir is not None:
        path = Path(config.profile_dir) / f"bench-loss-{label}.txt"
        title = (
            f"bench-loss {label}, N {config.positions}, D {config.dim}, {config.precision}, "
            f"params {config.params_of(loss.name)}"
        )
        out["profile_path"] = str(write_profile(step, path, compute.device.type, title))
    inputs["hidden"].grad = None
    inputs["item_emb"].grad = None
    return out


def _build_args(name: str, params: dict[str, Any], config: BenchLossConfig, num_items: int | None = None) -> dict:
    """The loss's parameters, plus a seeded generator where the loss draws random numbers and what it asks of the
    data (``data_inputs``): random data has no training split, so item counts follow Zipf's law (count of the
    i-th item ~ 1 / i), the usual shape of interaction data."""
    import torch

    from rece_bench.device import resolve_device
    from rece_bench.losses.base import lookup

    cls, args, device = lookup(name), dict(params), resolve_device(config.device)
    if any(spec.name == "generator" for spec in cls.params):
        args["generator"] = torch.Generator(device).manual_seed(config.seed)
    if "item_counts" in cls.data_inputs:
        ranks = torch.arange(1, (num_items or max(config.items)) + 1, device=device)  # (C,)
        args["item_counts"] = (1_000_000 // ranks).clamp(min=1)
    return args


def run_bench_loss(
    config: BenchLossConfig, results_root: Path | None, on_row: Callable[[BenchLossRow], None] | None = None
) -> BenchLossResult:
    """Every (catalogue size, loss) pair in order; the rows so far are rewritten atomically after each one."""
    import torch

    from rece_bench import __version__

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = None if results_root is None else Path(results_root) / BENCH_DIR / f"bench-loss-{stamp}.json"
    header = {
        "config": asdict(config),
        "torch": torch.__version__,
        "rece_bench": __version__,
        "created": stamp,
        "threads": config.threads or torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    rows: list[BenchLossRow] = []
    with using_threads(config.threads):
        for num_items in config.items:
            for name in config.losses:
                log.info("bench-loss %s at C=%d", name, num_items)
                rows.append(bench_one(config, name, num_items))
                gc.collect()
                if path is not None:
                    _save(path, header, rows)
                if on_row is not None:
                    on_row(rows[-1])
    return BenchLossResult(tuple(rows), path, header)


def _save(path: Path, header: dict[str, Any], rows: list[BenchLossRow]) -> None:
    try:
        atomic_write_json(path, {**header, "rows": [row.to_dict() for row in rows]})
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}: pass a writable --results-dir") from None
