"""Probes: the measured peak of one candidate.

A probe builds the run of a candidate (``session.build_run``), lets Adam create its state, opens the same window as
training (``memory.Meter``), runs one training step on the worst-case batch (the users with the most positions and
seen items) and evaluates one chunk of validation users, and reads the peak: the CUDA allocator's on a GPU, live
tensor bytes on CPU. Validation of a budgeted run goes in chunks of at most ``batch_size`` users, so it never needs
more than a training step (the metrics do not change). Probes are cached per (dataset, loss and its implementation
revision, the model's revision, configuration, precision, device, the loss's working block) under
``<results>/probes``. A probe runs in the run's precision (autocast as in training) and, for a streaming loss, with
the working block the budget gives (``training.session.working_loss_params``), so it measures what training will run.

The modules that import torch or pandas (``training``, ``data``) are imported inside the functions
that need them, so that `rece-bench --help` stays fast; none of them imports ``budget`` back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from rece_bench.budget.choice import Probe
from rece_bench.budget.ladder import Candidate
from rece_bench.config import TrainConfig
from rece_bench.io import DamagedFile, atomic_write_json, read_json
from rece_bench.memory import format_bytes

log = logging.getLogger(__name__)

PROBES_DIR = "probes"


class Prober:
    """Measures candidates of one base configuration on its device, with an on-disk cache under the results."""

    def __init__(
        self,
        base: TrainConfig,
        data_root: Path | None,
        results_root: Path,
        steps: int = 1,
        data=None,
        budget_bytes: int | None = None,
    ) -> None:
        """``data``: the run data already loaded (``data.loader.RunData``); then ``data_root`` may be None.
        ``budget_bytes``: the budget probed for, which sizes a streaming loss's block as it will in training."""
        from rece_bench.training.session import compute_of

        self.base, self.results_root, self.steps = base, Path(results_root), steps
        self.data_root = Path(data_root) if data_root is not None else None
        self._data = data
        self.budget_bytes = budget_bytes
        self.compute = compute_of(base)  # resolved once for every candidate

    def __call__(self, candidate: Candidate) -> Probe:
        config = candidate.apply(self.base, None)
        key = self._key(config)
        path = self._cache_path(config, key)
        cached = _cached_peak(path)
        if cached is not None:
            return Probe(candidate, cached["peak_bytes"], 0.0, cached=True)
        started = time.perf_counter()
        peak = measure_peak(config, self._run_data(), self.steps, self.compute, self.budget_bytes)
        probe = Probe(candidate, peak, time.perf_counter() - started)
        atomic_write_json(path, {"peak_bytes": peak, "time_s": probe.time_s, "key": key})
        log.info("probe %s %s: %s in %.1f s", config.loss, candidate.label(), format_bytes(peak), probe.time_s)
        return probe

    def _run_data(self):
        from rece_bench.data.loader import load_run_data

        if self._data is None:
            self._data = load_run_data(self.data_root, self.base.dataset, self.base.max_len)
        return self._data

    def _key(self, config: TrainConfig) -> dict[str, Any]:
        from rece_bench import __version__
        from rece_bench.data.store import read_meta
        from rece_bench.losses.base import lookup
        from rece_bench.models.sasrec import SASRec
        from rece_bench.training.session import working_loss_params

        params = {k: v for k, v in config.hyperparameters().items() if k not in ("epochs", "patience", "seed")}
        params.pop("budget_bytes", None)
        block_mib = working_loss_params(config, self.compute.device, self.budget_bytes).get("block_mib")
        if self._data is not None:
            prepared_at = self._data.prepared_at
        else:
            prepared_at = read_meta(self.data_root, config.dataset).get("created_at")
        return {
            "dataset": config.dataset, "prepared_at": prepared_at,
            "loss": config.loss, "params": params, "device": self.compute.describe(), "steps": self.steps,
            "precision": config.precision, "block_mib": block_mib,
            "eval_chunking": [config.eval_users_chunk, config.eval_items_chunk], "version": __version__,
            "loss_revision": lookup(config.loss).revision, "model_revision": SASRec.revision,
        }  # fmt: skip

    def _cache_path(self, config: TrainConfig, key: dict[str, Any]) -> Path:
        blob = json.dumps(key, sort_keys=True, default=str)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
        return self.results_root / PROBES_DIR / f"{config.dataset}-{config.loss}-{digest}.json"


def _cached_peak(path: Path) -> dict[str, Any] | None:
    """A cached probe, or None: none yet, or a damaged one (it is only a cache: the probe runs again)."""
    if not path.exists():
        return None
    try:
        cached = read_json(path, "it is probed again")
    except DamagedFile as exc:
        log.warning("%s", exc)
        return None
    peak = cached.get("peak_bytes", "missing")
    if peak is not None and (isinstance(peak, bool) or not isinstance(peak, int)):
        log.warning("cannot read %s (peak_bytes %r): it is probed again", path, peak)
        return None
    return cached


def measure_peak(
    config: TrainConfig, data, steps: int = 1, compute=None, budget_bytes: int | None = None
) -> int | None:
    """Peak bytes of ``steps`` training steps on the worst-case batch and one validation chunk; None on OOM.

    ``compute``: where and how (default: ``run.compute_of(config)``); ``budget_bytes``: the budget probed for,
    which sizes a streaming loss's block. Adam's state is created before the window (a step with zero gradients
    leaves the weights as they are), so the first measured step is already a steady-state one: training's peak
    comes from its second step on.
    """
    import torch

    from rece_bench.memory import PeakMemory
    from rece_bench.training.evaluate import Chunking, evaluate_model
    from rece_bench.training.session import build_run, compute_of
    from rece_bench.training.step import train_step

    compute = compute or compute_of(config)
    compute.cap_memory(None)  # a cap left by an earlier budgeted run in this process must not fail the probe
    run = build_run(config, data, compute=compute, budget_bytes=budget_bytes)
    chunking = Chunking(config.eval_users_chunk, config.eval_items_chunk)
    init_optimizer_state(run.model, run.optimizer)
    memory = PeakMemory(compute, track=(run.model, run.optimizer))
    try:
        with memory:
            batch = worst_case_batch(data.train, config.batch_size)  # made inside the window, as in training
            for _ in range(steps):
                train_step(run.model, run.loss_fn, run.optimizer, batch, compute, run.scaler)
                memory.step_done()
            valid = head(data.valid, chunking.users)
            evaluate_model(run.model, valid, compute, chunking, step_done=memory.step_done)
    except torch.OutOfMemoryError:
        return None
    finally:
        del run
        compute.empty_cache()
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
