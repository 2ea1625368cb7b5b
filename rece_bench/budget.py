"""Train under a memory budget: parse the budget, list a loss's candidates, probe their peaks, train the preferred fit.

Sizes. ``parse_size`` reads bytes with decimal units (``kB``/``MB``/``GB``/``TB`` and ``k``/``M``/``G``/``T``:
powers of 1000) or binary ones (``KiB``/``MiB``/``GiB``/``TiB``: powers of 1024), case-insensitive, or a plain
number of bytes (``1.5e9``). ``512MB`` is 512,000,000 bytes; ``512MiB`` is 536,870,912.

Candidates. Each loss has a *ladder*: a start configuration and a list of cuts, each cut lowering one knob through
a list of smaller values (batch size; negatives; RECE's extra chunks ``n_ec`` and rounds ``r``, with ``n_b`` from
the formula). The values come from the paper's grids (REFERENCE section 2); candidates a catalogue does not allow
(more negatives than items) are dropped. The ladder is the preference order: the knob believed to buy the least
quality per byte is cut first, so the first candidate that fits is the one to train. Every candidate is no larger
than the one before it in every knob, so peak memory falls along the ladder and a binary search finds the first fit
in about log2(n) probes, the cheapest candidate first (it also tells at once when nothing fits).

- ``ce``, ``ce_chunked``: batch size only, 256 down to 4.
- ``bce``, ``ce_neg``, ``gbce``: batch 256 and 1,024 negatives; the batch is cut to 64 first, then the negatives
  (more negatives bring a sampled loss closer to full CE: gSASRec, Klenitskiy & Vasilev), then the batch again.
  gBCE keeps t = 0.75, the paper's best everywhere (t does not change memory).
- ``rece``: batch 256, ``n_ec`` 3, ``r`` 8 (the paper's best Gowalla configuration has batch 128, n_ec 3, r 8; the
  same quality came at n_ec 0, r 2 with batch 128 kept): batch to 64, then rounds, then extra chunks, then batch.

A TOML file (``--grid``) replaces the ladder of any loss: ``[rece]`` with the start knobs and
``cuts = [{rounds = [4, 2, 1]}, {batch_size = [32, 8]}]``.

Probes. A probe builds the model, optimiser and loss of a candidate, lets Adam create its state, opens the same
window as training (see ``train.Meter``), runs one training step on the worst-case batch (the users with the most
positions and seen items) and evaluates one chunk of validation users, and reads the peak: the CUDA allocator's on
a GPU, live tensor bytes on CPU. Validation of a budgeted run goes in chunks of at most ``batch_size`` users, so it
never needs more than a training step (the metrics do not change). Probes are cached per (dataset, loss and its
implementation revision, the model's revision, configuration, device) under ``<results>/probes``. A candidate
fits when its probed peak is at most ``1 - headroom_fraction`` (95%) of the budget. On CUDA the training process is
then capped at the budget (``torch.cuda.set_per_process_memory_fraction``); a training peak above the budget makes
the run ``over_budget``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.io import atomic_write_json
from rece_bench.memory import format_bytes
from rece_bench.results import RunResult, write_result

log = logging.getLogger(__name__)

PROBES_DIR = "probes"
CHOICES_DIR = "budget"
SIZE_EXAMPLE = "write it like 512MB, 2GB, 2GiB or 1.5e9 (bytes)"
_DECIMAL = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
_DECIMAL |= {"t": 10**12, "tb": 10**12}
_BINARY = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_ABBREVIATIONS = {"batch_size": "batch", "n_extra_chunks": "n_ec", "rounds": "r", "n_negatives": "k"}


# ---------------------------------------------------------------- sizes


def parse_size(text: str | float | int, what: str = "budget") -> int:
    """``'512MB'``, ``'2GiB'``, ``'1.5e9'`` -> bytes; garbage, zero or a negative size raise UserError."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in {**_DECIMAL, **_BINARY}:
        raise UserError(f"{what} {str(text)!r} is not a size: {SIZE_EXAMPLE}")
    value = float(match.group(1)) * {**_DECIMAL, **_BINARY}[unit]
    if not math.isfinite(value) or value < 1:
        raise UserError(f"{what} {str(text)!r} must be a positive size of at least 1 byte: {SIZE_EXAMPLE}")
    return int(round(value))


def format_size(n_bytes: int | None) -> str:
    """A budget as it was probably written: 300000000 -> '300 MB', 2**31 -> '2 GiB'; else binary units."""
    if n_bytes is None:
        return "-"
    decimal = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6))
    for unit, size in (*decimal, ("GiB", 2**30), ("MiB", 2**20), ("kB", 10**3), ("KiB", 2**10)):
        if n_bytes >= size and (n_bytes * 10) % size == 0:
            return f"{n_bytes / size:g} {unit}"
    return format_bytes(n_bytes)


# ---------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """One configuration of the knobs a budget may change: the batch size and some loss parameters."""

    batch_size: int
    loss_params: Mapping[str, Any] = field(default_factory=dict)

    def knobs(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, **self.loss_params}

    def label(self) -> str:
        return ", ".join(f"{_ABBREVIATIONS.get(k, k)} {v}" for k, v in self.knobs().items())

    def apply(self, base: TrainConfig, budget_bytes: int | None) -> TrainConfig:
        params = {**base.loss_params, **self.loss_params}
        eval_users = min(base.eval_users_chunk, self.batch_size)  # validation never needs more than a step
        return dataclasses.replace(
            base, batch_size=self.batch_size, loss_params=params, budget_bytes=budget_bytes, eval_users_chunk=eval_users
        )


@dataclass(frozen=True)
class Ladder:
    """A start configuration and the cuts that follow it, in order; ``candidates()`` walks it."""

    start: Mapping[str, Any]
    cuts: tuple[tuple[str, tuple[Any, ...]], ...]

    def __post_init__(self) -> None:
        if "batch_size" not in self.start:
            raise UserError(f"grid start {dict(self.start)} has no batch_size: add batch_size = 128")
        current = dict(self.start)
        for knob, values in self.cuts:
            if knob not in current:
                raise UserError(f"grid cut of {knob!r} names no knob of the start {dict(self.start)}")
            for value in values:
                if not value < current[knob]:
                    raise UserError(f"grid cut of {knob!r}: {value!r} is not below {current[knob]!r}: cut downwards")
                current[knob] = value

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(self.start)

    def candidates(self) -> list[Candidate]:
        """Most preferred first; each candidate is no larger than the one before it in every knob."""
        current = dict(self.start)
        out = [_candidate(current)]
        for knob, values in self.cuts:
            for value in values:
                current[knob] = value
                out.append(_candidate(current))
        return out


def usable_candidates(loss: str, candidates: Sequence[Candidate], num_items: int, base_params=None) -> list[Candidate]:
    """The candidates a catalogue of ``num_items`` allows (no more negatives than items, ...), order kept."""
    from rece_bench.losses import build_loss

    usable = []
    for candidate in candidates:
        try:
            build_loss(loss, num_items=num_items, **{**(base_params or {}), **candidate.loss_params})
        except UserError:
            continue
        usable.append(candidate)
    return usable


def catalogue_size(data_root: Path, dataset: str) -> int:
    from rece_bench.data.store import read_meta

    return int(read_meta(Path(data_root), dataset)["num_items"])


def _candidate(knobs: Mapping[str, Any]) -> Candidate:
    params = {k: v for k, v in knobs.items() if k != "batch_size"}
    return Candidate(int(knobs["batch_size"]), params)


_SAMPLED_CUTS = (("batch_size", (128, 64)), ("n_negatives", (256, 64, 16, 4, 1)), ("batch_size", (32, 16, 8, 4)))
_BATCH_CUTS = (("batch_size", (128, 64, 32, 16, 8, 4)),)
LADDERS: dict[str, Ladder] = {
    "ce": Ladder({"batch_size": 256}, _BATCH_CUTS),
    "ce_chunked": Ladder({"batch_size": 256}, _BATCH_CUTS),
    "bce": Ladder({"batch_size": 256, "n_negatives": 1024}, _SAMPLED_CUTS),
    "ce_neg": Ladder({"batch_size": 256, "n_negatives": 1024}, _SAMPLED_CUTS),
    "gbce": Ladder({"batch_size": 256, "n_negatives": 1024, "t": 0.75}, _SAMPLED_CUTS),
    "rece": Ladder(
        {"batch_size": 256, "n_extra_chunks": 3, "rounds": 8},
        (
            ("batch_size", (128, 64)),
            ("rounds", (4, 2, 1)),
            ("n_extra_chunks", (2, 1, 0)),
            ("batch_size", (32, 16, 8, 4)),
        ),
    ),
}


def ladder_for(loss: str, grid: Mapping[str, Ladder] | None = None) -> Ladder:
    ladders = {**LADDERS, **(grid or {})}
    if loss not in ladders:
        raise UserError(f"no budget grid for loss {loss!r}: use one of {', '.join(sorted(ladders))}, or give --grid")
    return ladders[loss]


def read_grid(path: Path) -> dict[str, Ladder]:
    """Ladders from TOML (Python 3.11+): ``[rece]`` with the start knobs and ``cuts = [{rounds = [4, 2, 1]}, ...]``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UserError("--grid needs Python 3.11 or later (tomllib)") from None
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"cannot read grid {path}: {exc.strerror}: pass an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"grid {path} is not valid TOML: {exc}") from None
    return {loss: _ladder_from_table(loss, table) for loss, table in data.items()}


def _ladder_from_table(loss: str, table: Any) -> Ladder:
    example = "write it like [rece] batch_size = 128, rounds = 8, cuts = [{rounds = [4, 2, 1]}]"
    if not isinstance(table, dict) or not isinstance(table.get("cuts", []), list):
        raise UserError(f"grid entry {loss!r} is not a table with a list of cuts: {example}")
    start = {k: v for k, v in table.items() if k != "cuts"}
    cuts = []
    for cut in table.get("cuts", []):
        if not isinstance(cut, dict) or len(cut) != 1 or not isinstance(next(iter(cut.values())), list):
            raise UserError(f"grid entry {loss!r}: cut {cut!r} must name one knob and a list of values: {example}")
        knob, values = next(iter(cut.items()))
        cuts.append((knob, tuple(values)))
    return Ladder(start, tuple(cuts))


# ---------------------------------------------------------------- choice


@dataclass(frozen=True)
class Probe:
    """The measured peak of one candidate (None: the probe itself ran out of memory)."""

    candidate: Candidate
    peak_bytes: int | None
    time_s: float  # 0 when it came from the cache
    cached: bool = False


@dataclass(frozen=True)
class Choice:
    budget_bytes: int
    limit_bytes: int  # the budget less the headroom
    candidate: Candidate
    probes: tuple[Probe, ...]  # in the order they ran

    @property
    def probe_time_s(self) -> float:
        return sum(p.time_s for p in self.probes)

    @property
    def peak_bytes(self) -> int | None:
        return next(p.peak_bytes for p in self.probes if p.candidate == self.candidate)


class NothingFits(UserError):
    """Even the smallest candidate needs more than the budget."""

    def __init__(self, loss: str, budget_bytes: int, smallest: Probe) -> None:
        self.smallest = smallest
        need = format_bytes(smallest.peak_bytes) if smallest.peak_bytes is not None else "more than the device has"
        hint = ""
        if smallest.peak_bytes is not None:
            hint = f": pass --budget {format_size(_round_up(smallest.peak_bytes)).replace(' ', '')} or more"
        super().__init__(
            f"nothing fits a budget of {format_size(budget_bytes)}: the smallest {loss} candidate "
            f"({smallest.candidate.label()}) needs {need}{hint}"
        )


def _round_up(n_bytes: int) -> int:
    """A budget a bit above a need, in whole MB: room for the headroom."""
    return math.ceil(n_bytes * 1.1 / 10**6) * 10**6


def choose(
    loss: str,
    candidates: Sequence[Candidate],
    budget_bytes: int,
    probe: Callable[[Candidate], Probe],
    headroom_fraction: float = 0.05,
) -> Choice:
    """The first candidate whose probed peak fits; the smallest is probed first, then a binary search."""
    if not candidates:
        raise UserError(f"the budget grid of {loss!r} has no candidates")
    limit = int(budget_bytes * (1 - headroom_fraction))
    probes: dict[int, Probe] = {}

    def fits(index: int) -> bool:
        if index not in probes:
            probes[index] = probe(candidates[index])
        peak = probes[index].peak_bytes
        return peak is not None and peak <= limit

    lo, hi = 0, len(candidates) - 1
    if not fits(hi):
        raise NothingFits(loss, budget_bytes, probes[hi])
    while lo < hi:  # invariant: candidates[hi] fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return Choice(budget_bytes, limit, candidates[hi], tuple(probes.values()))


# ---------------------------------------------------------------- probes


class Prober:
    """Measures candidates of one base configuration on its device, with an on-disk cache under the results."""

    def __init__(self, base: TrainConfig, data_root: Path, results_root: Path, steps: int = 1) -> None:
        self.base, self.data_root, self.results_root, self.steps = base, Path(data_root), Path(results_root), steps
        self._data = None

    def __call__(self, candidate: Candidate) -> Probe:
        config = candidate.apply(self.base, None)
        path = self._cache_path(config)
        if path.exists():
            cached = json.loads(path.read_text())
            return Probe(candidate, cached["peak_bytes"], 0.0, cached=True)
        started = time.perf_counter()
        peak = measure_peak(config, self._run_data(), self.steps)
        probe = Probe(candidate, peak, time.perf_counter() - started)
        atomic_write_json(path, {"peak_bytes": peak, "time_s": probe.time_s, "key": self._key(config)})
        log.info("probe %s %s: %s in %.1f s", config.loss, candidate.label(), format_bytes(peak), probe.time_s)
        return probe

    def _run_data(self):
        from rece_bench.train import load_run_data

        if self._data is None:
            self._data = load_run_data(self.data_root, self.base.dataset, self.base.max_len)
        return self._data

    def _key(self, config: TrainConfig) -> dict[str, Any]:
        from rece_bench import __version__
        from rece_bench.data.store import read_meta
        from rece_bench.losses.base import lookup
        from rece_bench.models.sasrec import SASRec

        params = {k: v for k, v in config.hyperparameters().items() if k not in ("epochs", "patience", "seed")}
        params.pop("budget_bytes", None)
        return {
            "dataset": config.dataset, "prepared_at": read_meta(self.data_root, config.dataset).get("created_at"),
            "loss": config.loss, "params": params, "device": _device_name(config.device), "steps": self.steps,
            "eval_chunking": [config.eval_users_chunk, config.eval_items_chunk], "version": __version__,
            "loss_revision": lookup(config.loss).revision, "model_revision": SASRec.revision,
        }  # fmt: skip

    def _cache_path(self, config: TrainConfig) -> Path:
        blob = json.dumps(self._key(config), sort_keys=True, default=str)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
        return self.results_root / PROBES_DIR / f"{config.dataset}-{config.loss}-{digest}.json"


def _device_name(device: str) -> str:
    import torch

    parsed = torch.device(device)
    if parsed.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(parsed)}"
    return parsed.type


def measure_peak(config: TrainConfig, data, steps: int = 1) -> int | None:
    """Peak bytes of ``steps`` training steps on the worst-case batch and one validation chunk; None on OOM.

    Adam's state is created before the window (a step with zero gradients leaves the weights as they are), so the
    first measured step is already a steady-state one: training's peak comes from its second step on.
    """
    import torch

    from rece_bench.evaluate import Chunking, evaluate_model
    from rece_bench.memory import PeakMemory
    from rece_bench.train import build_loss_for, build_model_and_optimizer, train_step

    device = torch.device(config.device)
    if device.type == "cuda":  # a cap left by an earlier budgeted run in this process must not fail the probe
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    torch.manual_seed(config.seed)
    model, optimizer = build_model_and_optimizer(config, data.num_items, device)
    loss_fn = build_loss_for(config, data.num_items, device)
    chunking = Chunking(config.eval_users_chunk, config.eval_items_chunk)
    init_optimizer_state(model, optimizer)
    memory = PeakMemory(device, track=(model, optimizer))
    try:
        with memory:
            batch = worst_case_batch(data.train, config.batch_size)  # made inside the window, as in training
            for _ in range(steps):
                train_step(model, loss_fn, optimizer, batch, device)
                memory.step_done()
            evaluate_model(model, head(data.valid, chunking.users), device, chunking, step_done=memory.step_done)
    except torch.OutOfMemoryError:
        return None
    finally:
        del model, optimizer, loss_fn
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return memory.stats.peak_bytes


def init_optimizer_state(model, optimizer) -> None:
    """Let the optimiser create its state with zero gradients: Adam's update is then exactly zero."""
    import torch

    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def worst_case_batch(train, batch_size: int):
    """The ``batch_size`` users with the most non-pad positions (then the most seen items): the largest batch."""
    from rece_bench.data.loader import TrainBatch

    lengths = (train.inputs != 0).sum(dim=1)  # (U,)
    seen = train.seen.indptr[1:] - train.seen.indptr[:-1]  # (U,)
    rows = (lengths * (int(seen.max()) + 1) + seen).argsort(descending=True)[:batch_size]
    return TrainBatch(train.inputs[rows], train.targets[rows], train.seen.padded_rows(rows))


def head(eval_set, n_users: int):
    """The first ``n_users`` users of an evaluation set (one evaluation chunk)."""
    from rece_bench.data.loader import CSR, EvalSet

    indptr = eval_set.exclude.indptr[: n_users + 1]
    exclude = CSR(indptr, eval_set.exclude.values[: int(indptr[-1])])
    return EvalSet(eval_set.inputs[:n_users], eval_set.targets[:n_users], exclude)


# ---------------------------------------------------------------- training under a budget


@dataclass(frozen=True)
class BudgetedRun:
    result: RunResult
    choice: Choice

    @property
    def probe_ratio(self) -> float:
        """Probing time over training time (cached probes cost nothing)."""
        return self.choice.probe_time_s / max(self.result.train_time_s, 1e-9)


Trainer = Callable[..., RunResult]


def train_within_budget(
    config: TrainConfig,
    budget_bytes: int,
    data_root: Path,
    results_root: Path,
    progress=None,
    resume: bool = False,
    grid: Mapping[str, Ladder] | None = None,
    probe: Callable[[Candidate], Probe] | None = None,
    trainer: Trainer | None = None,
    headroom_fraction: float = 0.05,
) -> BudgetedRun:
    """Choose the preferred candidate of ``config.loss`` that fits ``budget_bytes``, train it, check its peak."""
    from rece_bench.train import train_run

    candidates = ladder_for(config.loss, grid).candidates()
    candidates = usable_candidates(
        config.loss, candidates, catalogue_size(data_root, config.dataset), config.loss_params
    )
    probe = probe or Prober(config, data_root, results_root)
    choice = choose(config.loss, candidates, budget_bytes, probe, headroom_fraction)
    train_config = choice.candidate.apply(config, budget_bytes)
    cap_cuda_memory(train_config.device, budget_bytes)
    result = (trainer or train_run)(train_config, data_root, results_root, progress, resume=resume)
    result = mark_over_budget(result, results_root)
    record_choice(results_root, result, choice)
    return BudgetedRun(result, choice)


def mark_over_budget(result: RunResult, results_root: Path) -> RunResult:
    """A finished run whose measured peak exceeds its budget becomes ``over_budget`` (the file is rewritten)."""
    budget = result.budget_bytes
    if result.status != "ok" or budget is None or result.peak_bytes is None or result.peak_bytes <= budget:
        return result
    message = f"training peak {format_bytes(result.peak_bytes)} is above the budget of {format_size(budget)}"
    result = dataclasses.replace(result, status="over_budget", message=message)
    write_result(results_root, result)
    return result


def cap_cuda_memory(device: str, budget_bytes: int) -> None:
    """On CUDA, cap this process's allocator at the budget (a larger allocation raises OutOfMemoryError)."""
    import torch

    parsed = torch.device(device)
    if parsed.type != "cuda":
        return
    total = torch.cuda.get_device_properties(parsed).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget_bytes / total), parsed)


def record_choice(results_root: Path, result: RunResult, choice: Choice) -> None:
    """Beside the result: what was probed, what each probe measured and took, and the probe-time ratio."""
    probes = [
        {"candidate": p.candidate.knobs(), "peak_bytes": p.peak_bytes, "time_s": p.time_s, "cached": p.cached}
        for p in choice.probes
    ]
    atomic_write_json(
        Path(results_root) / CHOICES_DIR / f"{result.run_id}.json",
        {
            "run_id": result.run_id, "budget_bytes": choice.budget_bytes, "limit_bytes": choice.limit_bytes,
            "chosen": choice.candidate.knobs(), "probed_peak_bytes": choice.peak_bytes,
            "train_peak_bytes": result.peak_bytes, "probe_time_s": choice.probe_time_s,
            "train_time_s": result.train_time_s, "probes": probes,
        },
    )  # fmt: skip


def nothing_fits_result(config: TrainConfig, budget_bytes: int, error: NothingFits) -> RunResult:
    """The result of a budget no candidate fits (for sweeps): status over_budget, the smallest need as the peak."""
    from rece_bench.train import run_id_of

    smallest = error.smallest.candidate.apply(config, budget_bytes)
    return RunResult(
        run_id=run_id_of(smallest), dataset=config.dataset, loss=config.loss, params=smallest.hyperparameters(),
        seed=config.seed, device=config.device, status="over_budget", peak_bytes=error.smallest.peak_bytes,
        budget_bytes=budget_bytes, message=str(error),
    )  # fmt: skip
