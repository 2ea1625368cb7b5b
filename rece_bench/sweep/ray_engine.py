"""The Ray engine of a sweep: each job is one Ray task, on this machine or on a cluster.

The driver reads the prepared dataset once and puts it in Ray's object store, with the budget probes already
cached under its results root; a task trains its job in a temporary results root of its own (checkpoints
included, local to its node) and returns the result and every file it wrote there (the result, the budget choice,
new probes). The driver writes them into its results root as a local sweep would, the result file last, so the
restart rule and the report see no difference. Workers need rece-bench and its dependencies, not a shared
filesystem.

Jobs are handed out as room frees up: at most as many tasks are in flight as the cluster's alive nodes can run at
once (their CPUs over ``cpus_per_job``, their GPUs over ``gpus_per_job``), recounted whenever a task ends, so a
node that joins takes work and no job waits behind another's shard. A budgeted job is handed out only once the
job of its loss and seed at the next smaller budget has its result, and its task gets the ok results of its loss and
seed, so that a configuration two budgets choose is trained once, as on the local engine (``grid.schedule``,
``grid.once``). A task whose worker process or node dies is
retried ``retries`` times by Ray, from the start of its job (its checkpoints died with it); a task that raises is
not retried. A job that still fails is recorded with status ``failed`` and the error's first line. On Ctrl-C the
tasks in flight are cancelled and nothing of theirs is recorded, so the same command runs them again.

Only this module imports Ray, and only when a sweep runs on it; Ray is an optional extra (``.[ray]``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rece_bench.errors import UserError
from rece_bench.io import atomic_write_text
from rece_bench.processes import process_exists
from rece_bench.results import RUNS_DIR, RunResult, write_result
from rece_bench.sweep.grid import Job, SweepConfig, failed_result, run_job, schedule

log = logging.getLogger(__name__)
INSTALL_HINT = 'pip install -e ".[ray]" (or pip install "rece-bench[ray]")'
CONNECT_TIMEOUT_S = 10.0
JOB_DIR_PREFIX = "rece-bench-job-"  # a task's temporary results root: rece-bench-job-<worker pid>-<random>


@dataclass(frozen=True)
class RayEngine:
    """Where and how big the tasks are. ``address``: a running cluster that this machine is a node of (``HEAD:6379``,
    or ``auto``), or None to start a Ray instance on this machine for the sweep. ``gpus_per_job``: None is 1 on CUDA,
    0 on CPU; a fraction shares a GPU between jobs."""

    address: str | None = None
    cpus_per_job: int = 1
    gpus_per_job: float | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.cpus_per_job, bool) or not isinstance(self.cpus_per_job, int) or self.cpus_per_job < 1:
            raise UserError(f"--cpus-per-job must be a whole number of at least 1, got {self.cpus_per_job!r}")
        if self.gpus_per_job is not None and not self.gpus_per_job >= 0:
            raise UserError(f"--gpus-per-job must be 0 or more, got {self.gpus_per_job!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise UserError(f"--retries must be a whole number of at least 0, got {self.retries!r}")

    def gpus_for(self, device: str) -> float:
        """The GPUs a job of ``device`` asks for; a device Ray cannot place is refused."""
        if device not in ("cpu", "cuda"):
            raise UserError(f"--device {device} with --engine ray: use --device cuda (Ray gives each job its GPU)")
        gpus = self.gpus_per_job if self.gpus_per_job is not None else (1.0 if device == "cuda" else 0.0)
        if gpus > 0 and device == "cpu":
            raise UserError(f"--gpus-per-job {gpus:g} trains on GPUs: pass --device cuda too")
        if gpus == 0 and device == "cuda":
            raise UserError("--device cuda needs --gpus-per-job above 0 (e.g. 1, or 0.5 for two jobs per GPU)")
        return gpus

    def job_function(self) -> Callable[..., tuple[RunResult, dict[str, str]]]:
        """What a Ray task runs for one job: ``_train_job``, called as (job, config, data, probes, threads). The
        tests' engine runs a stand-in for ``train_run`` there."""
        return _train_job

    @contextlib.contextmanager
    def ready(self, config: SweepConfig) -> Iterator[None]:
        """Connected to Ray, with a cluster that can hold a job of ``config``; else a UserError, before any job."""
        ray = import_ray()
        gpus = self.gpus_for(config.base.device)
        with connected(ray, self.address):
            Room(ray, self.cpus_per_job, gpus).check()
            yield

    def run(self, todo, config, data_root, results_root, progress):
        """Run ``todo`` on Ray (inside ``ready``); returns (job, result) pairs as they finish, each result written."""
        import ray

        gpus = self.gpus_for(config.base.device)
        task = ray.remote(self.job_function()).options(
            num_cpus=self.cpus_per_job, num_gpus=gpus, max_retries=self.retries, retry_exceptions=False
        )
        data = ray.put(_load_data(config, data_root))
        probes = ray.put(cached_probes(results_root, config.base.dataset))

        def submit(job: Job):
            return task.remote(job, config, data, probes, twin_files(results_root, job, config), config.base.threads)

        room = Room(ray, self.cpus_per_job, gpus)
        return hand_out(ray, todo, submit, room, config, results_root, progress, self.retries)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--engine ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connected(ray, address: str | None) -> Iterator[None]:
    """Connected to Ray for the block: an instance already connected in this process is used as it is;
    otherwise connect to ``address`` or start a local instance, and disconnect (stopping a started one) after."""
    if ray.is_initialized():
        yield
        return
    if address:
        check_answers(address)
    try:
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UserError(f"cannot connect to {where}: {first_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_answers(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast on an address nobody listens at: ``ray.init`` keeps retrying one for minutes (over two, measured)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"no Ray cluster answers at {address} ({reason}): start one with `ray start --head` and pass its "
            "address (HEAD:6379), or leave --address out to run on this machine"
        ) from None


class Room:
    """How many jobs the cluster's alive nodes can run at once, counted from their resources."""

    def __init__(self, ray, cpus_per_job: int, gpus_per_job: float) -> None:
        self._ray, self.cpus, self.gpus = ray, cpus_per_job, gpus_per_job

    def jobs(self) -> int:
        total = 0
        for node in self._ray.nodes():
            if not node.get("Alive"):
                continue
            resources = node.get("Resources", {})
            fit = int(resources.get("CPU", 0) // self.cpus)
            if self.gpus:
                fit = min(fit, int(resources.get("GPU", 0) // self.gpus))
            total += fit
        return total

    def check(self) -> None:
        """Before any job starts: a job that no node can hold is a one-line error naming what the cluster has."""
        if self.jobs() > 0:
            return
        totals = self._ray.cluster_resources()
        has = f"{totals.get('CPU', 0):g} CPUs and {totals.get('GPU', 0):g} GPUs"
        if self.gpus and not totals.get("GPU"):
            raise UserError(
                f"--gpus-per-job {self.gpus:g}: the Ray cluster has no GPU ({has}): use --device cpu, or add GPU nodes"
            )
        raise UserError(
            f"no node of the Ray cluster can hold a job of {self.cpus} CPUs and {self.gpus:g} GPUs (the cluster has "
            f"{has} in all): lower --cpus-per-job or --gpus-per-job"
        )


def hand_out(ray, todo: Sequence[Job], submit, room: Room, config, results_root, progress, retries: int) -> list:
    """Keep the cluster's room full of tasks until every job has a result, a job only once the job it waits for
    (``grid.schedule``) has its result; Ctrl-C cancels what is in flight."""
    waiting, running, runs, done = deque(schedule(todo)), {}, [], set()  # done: id() of each job with a result
    try:
        while waiting or running:
            room_now = max(1, room.jobs()) if waiting else 0
            for item in [item for item in waiting if item[1] is None or id(item[1]) in done]:
                if len(running) >= room_now:
                    break
                waiting.remove(item)
                running[submit(item[0])] = item[0]
                progress.job_started(item[0])
            [ready], _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ready)
            runs.append((job, collect(ray, ready, job, config, results_root, retries)))
            done.add(id(job))
            progress.job_done(*runs[-1])
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    return runs


def collect(ray, ref, job: Job, config: SweepConfig, results_root: Path, retries: int) -> RunResult:
    """The task's files written into the results root (the result last); a task that failed becomes a result."""
    try:
        result, files = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the tasks this driver cancels are never collected
        message = error_summary(ray, exc, retries)
        log.info("job %s failed: %s", job.label(), message)  # the result says it; the CLI shows it
        result = failed_result(job, config, message)
        write_result(results_root, result)
        return result
    for relative in sorted(files, key=lambda path: path.startswith(f"{RUNS_DIR}/")):  # the result file last
        atomic_write_text(Path(results_root) / relative, files[relative])
    return result


def error_summary(ray, exc: BaseException, retries: int) -> str:
    """One line: the task's own exception, or what killed its worker and how often it was tried."""
    if isinstance(exc, ray.exceptions.RayTaskError) and getattr(exc, "cause", None) is not None:
        cause = exc.cause
        return f"{type(cause).__name__}: {first_line(cause)}" if str(cause) else type(cause).__name__
    tries = f"tried {retries + 1} time{'s' if retries else ''}"
    return f"{type(exc).__name__} ({tries}): {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def cached_probes(results_root: Path, dataset: str) -> dict[str, str]:
    """The budget probes already measured for ``dataset`` (relative path -> file text), for the tasks' caches."""
    from rece_bench.budget.probe import PROBES_DIR

    folder = Path(results_root) / PROBES_DIR
    return {f"{PROBES_DIR}/{p.name}": p.read_text() for p in sorted(folder.glob(f"{dataset}-*.json"))}


def twin_files(results_root: Path, job: Job, config: SweepConfig) -> dict[str, str]:
    """The ok results of ``job``'s loss and seed under other budgets (relative path -> file text): the task looks
    among them for a run of the configuration its budget chooses (``grid.once``), as a local job looks in the
    results root. Jobs of the grid (no budget) get none."""
    from rece_bench.results import read_results, result_path

    if job.budget_bytes is None:
        return {}
    files = {}
    for row in read_results(results_root):
        same = (row["dataset"], row["loss"], row["seed"]) == (config.base.dataset, job.loss, job.seed)
        if same and row["status"] == "ok" and row["budget_bytes"] not in (None, job.budget_bytes):
            path = result_path(results_root, row["run_id"])
            files[path.relative_to(results_root).as_posix()] = path.read_text()
    return files


def _load_data(config: SweepConfig, data_root: Path):
    from rece_bench.training.driver import load_run_data

    return load_run_data(data_root, config.base.dataset, config.base.max_len)


# ---------------------------------------------------------------- in the worker


def _train_job(job: Job, config: SweepConfig, data, probes: dict[str, str], twins: dict[str, str], threads: int):
    """One job in a Ray worker: train it in a temporary results root holding the driver's probes and ``twins``
    (``twin_files``); return its result and the files it wrote."""
    import torch

    torch.set_num_threads(threads)
    remove_orphans(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=f"{JOB_DIR_PREFIX}{os.getpid()}-") as tmp:
        root = Path(tmp)
        seeded = {**probes, **twins}
        for relative, text in seeded.items():
            atomic_write_text(root / relative, text)
        result = run_job(job, config, None, root, data=data)
        return result, written_files(root, seeded=set(seeded))


def remove_orphans(tmp: Path) -> None:
    """The folders of tasks whose worker process died on this node: a kill skips their clean-up, and each can hold
    checkpoints of a model and its Adam state. A folder is named after its worker's pid; a live pid is left alone."""
    for folder in tmp.glob(f"{JOB_DIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(JOB_DIR_PREFIX).split("-")[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def written_files(root: Path, seeded: set[str]) -> dict[str, str]:
    """Every JSON file under ``root`` (relative path -> text) but the checkpoints and the probes it was given."""
    from rece_bench.training.checkpoint import CHECKPOINTS_DIR

    files = {}
    for path in sorted(root.rglob("*.json")):
        relative = path.relative_to(root).as_posix()
        if relative.split("/")[0] != CHECKPOINTS_DIR and relative not in seeded:
            files[relative] = path.read_text()
    return files
