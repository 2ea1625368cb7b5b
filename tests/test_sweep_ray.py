"""Sweeps on a real local Ray instance (2 CPUs, shared by the module): the same result files as the local engine,
a worker killed mid-job retried and recorded once, a job that keeps failing recorded as failed, Ctrl-C, restarts,
and the command line's errors."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app
from rece_bench.config import TrainConfig
from rece_bench.results import RunResult, read_results, write_result
from rece_bench.sweep.grid import SweepConfig, run_sweep
from rece_bench.sweep.ray_engine import JOB_DIR_PREFIX, RayEngine

ray = pytest.importorskip("ray")
log = logging.getLogger(__name__)
runner = CliRunner()
GB = 10**9
GRID_FILE = "[ce]\nbatch_size = 32\ncuts = [{batch_size = [16]}]\n[bce]\nbatch_size = 32\nn_negatives = 8\ncuts = []\n"


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance for the module; its start-up time is logged (about 3 s on the 2-core test machine)."""
    started = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    log.warning("ray.init took %.1f s", time.perf_counter() - started)
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """The local engine on one thread, as each Ray task here, so that the two train bit for bit alike."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grid(tmp_path: Path):
    from rece_bench.budget.ladder import read_grid

    path = tmp_path / "grid.toml"
    path.write_text(GRID_FILE)
    return read_grid(path)


def _config(tmp_path: Path, **overrides) -> SweepConfig:
    base = TrainConfig(dataset="tiny", epochs=1, patience=1, max_len=12, dim=16)
    fields = dict(base=base, losses=("ce", "bce"), seeds=(7,), grid=_grid(tmp_path))
    fields.update(overrides)
    return SweepConfig(**fields)


class Scripted:
    """A quick stand-in for ``train_run`` (the real one runs in the first test): it writes an ok result, unless the
    job is a victim: ``die_once`` (the worker exits on the first attempt, decided by a marker file), ``die``
    (every attempt), ``raise_`` (an exception), ``sleep_s`` (a slow job). Every attempt is logged in ``folder``."""

    def __init__(self, folder: Path, die_once=(), die=(), raise_=(), slow=(), sleep_s: float = 0.0) -> None:
        self.folder, self.die_once, self.die, self.raise_, self.slow = folder, die_once, die, raise_, slow
        self.sleep_s = sleep_s

    def __call__(self, config, data_root, results_root, progress=None, resume=False, data=None):
        from rece_bench.training.session import run_id_of

        key = f"{config.loss}-{config.batch_size}"
        with open(self.folder / "attempts.log", "a") as handle:
            handle.write(key + "\n")
        marker = self.folder / f"{key}.died"
        if key in self.die or (key in self.die_once and not marker.exists()):
            marker.touch()
            os._exit(1)  # the worker process dies mid-job
        if key in self.raise_:
            raise RuntimeError(f"no such thing as {key}\nsecond line of the error")
        if key in self.slow:
            time.sleep(self.sleep_s)
        assert data is not None and data.num_items == 120  # the dataset came through the object store
        result = RunResult(
            run_id=run_id_of(config), dataset=config.dataset, loss=config.loss, params=config.hyperparameters(),
            seed=config.seed, device="cpu", status="ok", metrics={"ndcg@10": 0.5}, budget_bytes=config.budget_bytes,
        )  # fmt: skip
        write_result(results_root, result)
        return result

    def attempts(self) -> list[str]:
        return (self.folder / "attempts.log").read_text().split()


def _scripted(engine: RayEngine, trainer: Scripted) -> RayEngine:
    """``engine`` whose tasks run ``trainer`` in place of ``train_run`` in the workers."""
    return ScriptedRay(engine.address, engine.cpus_per_job, engine.gpus_per_job, engine.retries, trainer=trainer)


@dataclass(frozen=True)
class ScriptedRay(RayEngine):
    trainer: Scripted | None = None

    def job_function(self):
        trainer = self.trainer

        def job(*args):
            return _train_with(trainer, *args)

        return job


def _train_with(trainer: Scripted, *args):
    """The engine's job in a worker, with ``trainer`` as ``train.train_run`` for its duration (workers are reused)."""
    from rece_bench.sweep.ray_engine import _train_job
    from rece_bench.training import driver as train

    real = train.train_run
    train.train_run = trainer
    try:
        return _train_job(*args)
    finally:
        train.train_run = real


def _files(root: Path) -> dict[str, dict]:
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


def _same_run(local: dict, remote: dict) -> None:
    when_and_where = ("train_time_s", "created_at", "history", "pid", "host", "process_start")
    assert {k: v for k, v in local.items() if k not in when_and_where} == {
        k: v for k, v in remote.items() if k not in when_and_where
    }
    assert [(h["epoch"], h["loss"], h["valid_ndcg@10"]) for h in local["history"]] == [
        (h["epoch"], h["loss"], h["valid_ndcg@10"]) for h in remote["history"]
    ]


def test_ray_writes_the_same_result_files_as_the_local_engine(local_ray, one_thread, tiny_data_root, tmp_path):
    grid_config = _config(tmp_path)  # three candidates of two losses
    budget_config = _config(tmp_path, losses=("ce",), budgets_bytes=(GB,))  # probes, then the chosen candidate
    local, remote = tmp_path / "local", tmp_path / "ray"
    for config in (grid_config, budget_config):
        run_sweep(config, tiny_data_root, local)
        summary = run_sweep(config, tiny_data_root, remote, engine=RayEngine(cpus_per_job=1))
        assert summary.results and {r.status for r in summary.results} == {"ok"}
    local_files, remote_files = _files(local), _files(remote)
    assert sorted(local_files) == sorted(remote_files)
    assert sum(name.startswith("runs/") for name in local_files) == 4
    assert any(name.startswith("probes/") for name in local_files) and "checkpoints" not in str(remote_files)
    for name, content in local_files.items():
        if name.startswith("runs/"):
            assert content["metrics"], name
            _same_run(content, remote_files[name])
        elif name.startswith("probes/"):
            assert content["peak_bytes"] == remote_files[name]["peak_bytes"]
        else:
            assert content["chosen"] == remote_files[name]["chosen"], name
    for config in (grid_config, budget_config):  # a rerun runs nothing
        again = run_sweep(config, tiny_data_root, remote, engine=RayEngine())
        assert again.skipped == again.planned and not again.results


def test_budgets_that_do_not_bind_train_their_configuration_once_on_ray(local_ray, tiny_data_root, tmp_path):
    """Both budgets choose batch 32 of ce: the larger budget's job waits for the smaller's and records its result,
    instead of training the same configuration in a second task at the same time (2 CPUs: room for both)."""
    config = _config(tmp_path, losses=("ce",), budgets_bytes=(2 * GB, GB))
    summary = run_sweep(config, tiny_data_root, tmp_path / "r", engine=RayEngine(cpus_per_job=1))
    assert [r.budget_bytes for r in summary.results] == [GB, 2 * GB]  # the larger waited
    small, large = summary.results
    assert small.status == large.status == "ok" and small.params == large.params
    assert small.message is None or "not trained again" not in small.message
    assert small.run_id in large.message and "not trained again" in large.message
    assert large.metrics == small.metrics and large.history == small.history
    saved = {row["budget_bytes"]: row for row in read_results(tmp_path / "r")}
    assert saved[2 * GB]["message"] == large.message and saved[GB]["run_id"] == small.run_id
    again = run_sweep(config, tiny_data_root, tmp_path / "r", engine=RayEngine())
    assert again.skipped == again.planned == 2 and not again.results


# ---------------------------------------------------------------- the command line


def _sweep_args(tiny_data_root, tmp_path, *more):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID_FILE)
    return ["sweep", "--dataset", "tiny", "--loss", "ce", "--grid", str(grid), "--epochs", "1", "--max-len", "12",
            "--data-dir", str(tiny_data_root), "--results-dir", str(tmp_path / "results"), *more]  # fmt: skip


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for needle in needles:
        assert needle in result.output


def test_cli_sweep_on_ray_runs_then_skips(local_ray, tiny_data_root, tmp_path):
    args = _sweep_args(tiny_data_root, tmp_path, "--engine", "ray", "--cpus-per-job", "1")
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "2 runs planned, 0 already done, 2 run now" in first.output and "jobs run now" in first.output
    assert f"rece-bench report --dataset tiny --results-dir {tmp_path / 'results'}" in first.output
    second = runner.invoke(app, args, terminal_width=200)
    assert "2 runs planned, 2 already done, 0 run now" in second.output


def test_cli_bad_engine_options_are_one_line_errors(local_ray, tiny_data_root, tmp_path):
    _one_line_error(runner.invoke(app, _sweep_args(tiny_data_root, tmp_path, "--engine", "nope")), "--engine")
    _one_line_error(runner.invoke(app, _sweep_args(tiny_data_root, tmp_path, "--workers", "2")), "--engine ray")
    no_gpu = _sweep_args(tiny_data_root, tmp_path, "--engine", "ray", "--device", "cuda", "--gpus-per-job", "1")
    _one_line_error(runner.invoke(app, no_gpu), "no GPU")
    _one_line_error(runner.invoke(app, _sweep_args(tiny_data_root, tmp_path, "--engine", "ray", "--retries", "-1")))
    assert not (tmp_path / "results" / "runs").exists()  # no job started


# ---------------------------------------------------------------- faults (these kill workers: Ray starts new ones)


def test_a_job_whose_worker_dies_is_retried_and_recorded_once(local_ray, tiny_data_root, tmp_path):
    trainer = Scripted(tmp_path, die_once=("ce-16",))
    summary = run_sweep(_config(tmp_path), tiny_data_root, tmp_path / "r", engine=_scripted(RayEngine(), trainer))
    assert sorted(trainer.attempts()) == ["bce-32", "ce-16", "ce-16", "ce-32"]
    assert [r.status for r in summary.results] == ["ok"] * 3
    assert len(list((tmp_path / "r" / "runs").glob("*.json"))) == 3
    orphans = [p for p in Path(tempfile.gettempdir()).glob(f"{JOB_DIR_PREFIX}*") if not _alive_folder(p)]
    assert not orphans  # the retry's task removed the dead worker's folder


def _alive_folder(folder: Path) -> bool:
    pid = int(folder.name.removeprefix(JOB_DIR_PREFIX).split("-")[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_job_that_keeps_failing_is_recorded_failed_and_the_others_finish(local_ray, tiny_data_root, tmp_path):
    trainer = Scripted(tmp_path, raise_=("ce-16",), die=("bce-32",))
    engine = RayEngine(retries=1)
    summary = run_sweep(_config(tmp_path), tiny_data_root, tmp_path / "r", engine=_scripted(engine, trainer))
    by_loss = {(r.loss, r.params["batch_size"]): r for r in summary.results}
    assert by_loss["ce", 32].status == "ok"
    assert by_loss["ce", 16].status == "failed"
    assert by_loss["ce", 16].message == "RuntimeError: no such thing as ce-16"  # not retried: it raised
    assert by_loss["bce", 32].status == "failed" and by_loss["bce", 32].message.startswith("WorkerCrashedError")
    assert "tried 2 times" in by_loss["bce", 32].message
    assert sorted(trainer.attempts()) == ["bce-32", "bce-32", "ce-16", "ce-32"]
    assert sorted(r["status"] for r in read_results(tmp_path / "r")) == ["failed", "failed", "ok"]
    again = run_sweep(_config(tmp_path), tiny_data_root, tmp_path / "r", engine=_scripted(engine, trainer))
    assert again.skipped == 3 and not again.results  # failed is final: delete the file to run it again


class _StopAfterFirst:
    """The driver's Ctrl-C, arriving as the first result comes in."""

    def __getattr__(self, name):
        return lambda *args: None

    def job_done(self, job, result):
        raise KeyboardInterrupt


def test_ctrl_c_cancels_the_jobs_in_flight_and_a_rerun_runs_only_those(local_ray, tiny_data_root, tmp_path):
    slow = Scripted(tmp_path, slow=("ce-16", "bce-32"), sleep_s=120)
    config, results = _config(tmp_path), tmp_path / "r"
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, tiny_data_root, results, _StopAfterFirst(), engine=_scripted(RayEngine(), slow))
    assert time.perf_counter() - started < 60  # the slow job in flight was cancelled, not waited for
    assert [(r["loss"], r["params"]["batch_size"]) for r in read_results(results)] == [("ce", 32)]
    rerun = run_sweep(config, tiny_data_root, results, engine=_scripted(RayEngine(), Scripted(tmp_path)))
    assert (rerun.skipped, len(rerun.results)) == (1, 2)


# ---------------------------------------------------------------- without Ray


def test_cli_without_ray_installed_names_the_extra(tiny_data_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    _one_line_error(runner.invoke(app, _sweep_args(tiny_data_root, tmp_path, "--engine", "ray")), ".[ray]")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_an_address_nobody_answers_is_a_quick_one_line_error(tiny_data_root, tmp_path):
    args = _sweep_args(tiny_data_root, tmp_path, "--engine", "ray", "--address", f"127.0.0.1:{_closed_port()}")
    code = "import sys; from rece_bench.cli import app; app(sys.argv[1:])"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "no Ray cluster answers at 127.0.0.1:" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - started < 30


def test_sweep_help_does_not_import_ray():
    code = "import sys, rece_bench.cli; rece_bench.cli.app(['sweep', '--help'], standalone_mode=False); "
    code += "print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False False")
