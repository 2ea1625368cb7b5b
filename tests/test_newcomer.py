"""Issue 23, what a newcomer met: fair timings by default (threads), a report that compares like with like, no lost
progress (locks, --restart, signals), a tour that runs, and the faults that still gave tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app

runner = CliRunner()
TINY_RUN = ["--epochs", "1", "--batch-size", "32", "--max-len", "12", "--dim", "16"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) <= 2, text
    for needle in needles:
        assert needle in text, text


def _saved(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]


# ---------------------------------------------------------------- 1. threads: one policy, recorded, shown


def test_every_training_or_benchmark_command_takes_threads():
    for command in ("run", "sweep", "demo", "bench-step", "bench-loss"):
        shown = _invoke(command, "--help")
        assert shown.exit_code == 0 and "--threads" in shown.output, command


def test_a_run_trains_at_one_thread_by_default_and_records_it(tmp_path, tiny_data_root, monkeypatch):
    import torch

    from rece_bench import train

    seen = []
    real_step = train.train_step
    monkeypatch.setattr(train, "train_step", lambda *a: (seen.append(torch.get_num_threads()), real_step(*a))[1])
    before = torch.get_num_threads()
    results = tmp_path / "results"
    ran = _invoke("run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results)
    assert ran.exit_code == 0, ran.output
    assert set(seen) == {1} and torch.get_num_threads() == before  # applied while training, restored after
    assert _saved(results)[0]["threads"] == 1
    again = _invoke("run", "--dataset", "tiny", *TINY_RUN, "--seed", "8", "--threads", "2",
                    "--data-dir", tiny_data_root, "--results-dir", results)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert sorted(row["threads"] for row in _saved(results)) == [1, 2]
    assert 2 in seen


def test_threads_is_no_part_of_a_runs_identity_and_bad_values_are_refused(tiny_config):
    from rece_bench.run import run_id_of

    assert run_id_of(tiny_config(threads=1)) == run_id_of(tiny_config(threads=4))
    _one_line_error(_invoke("run", "--dataset", "tiny", "--threads", "0"), "threads", "--threads 1")


def test_the_sweep_engines_share_one_thread_policy():
    from rece_bench.threads import job_threads

    assert job_threads(None) == 1  # local: one thread per job
    assert job_threads(None, cpus_per_job=3) == 3  # Ray: the CPUs each job is given
    assert job_threads(2, cpus_per_job=3) == 2  # an explicit --threads wins on both


def test_a_local_sweep_applies_threads_per_job(tmp_path, tiny_data_root):
    results = tmp_path / "results"
    args = ["sweep", "--dataset", "tiny", "--loss", "ce", "--budget", "1GB", "--epochs", "1", "--max-len", "12"]
    ran = _invoke(*args, "--threads", "2", "--data-dir", tiny_data_root, "--results-dir", results)
    assert ran.exit_code == 0, ran.output
    assert [row["threads"] for row in _saved(results)] == [2]


# ---------------------------------------------------------------- 5. SIGTERM is Ctrl-C for every command


def _cli_process(*args, cwd: Path | None = None):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    env.pop("RECE_BENCH_FAULT", None)
    code = "import sys; from rece_bench.cli import app; sys.argv[0] = 'rece-bench'; app()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_running(results: Path, process, timeout_s: float = 120.0) -> None:
    """Until a result file of ``results`` says running (training has begun), or the process has ended."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        for path in (results / "runs").glob("*.json"):
            try:
                if json.loads(path.read_text())["status"] == "running":
                    return
            except (ValueError, KeyError):
                pass  # not yet whole
        time.sleep(0.05)
    raise AssertionError(f"no run started under {results}: {process.communicate()}")


def test_sigterm_stops_run_budget_like_ctrl_c(tmp_path, tiny_data_root):
    """The real CLI in a subprocess: the result says interrupted, one line, exit 130 (SIGTERM's own is 143)."""
    import signal

    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", "--budget", "1GB", "--dim", "16", "--epochs", "500", "--patience", "500"]
    process = _cli_process(*args, "--max-len", "12", "--data-dir", tiny_data_root, "--results-dir", results)
    _wait_for_running(results, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert "interrupted" in out and "Traceback" not in out + err, (out, err)
    assert [row["status"] for row in _saved(results)] == ["interrupted"]


def test_sigterm_stops_a_sweep_and_the_demo_while_training(tmp_path, tiny_data_root, monkeypatch):
    """In process (the same app callback sets the policy): SIGTERM at the first training step of each."""
    import os
    import signal

    from rece_bench import train

    monkeypatch.setattr(train, "fit", lambda *a: os.kill(os.getpid(), signal.SIGTERM))  # in train_run only
    sweep = ["sweep", "--dataset", "tiny", "--loss", "ce", "--budget", "1GB", "--max-len", "12"]
    commands = {"sweep": [*sweep, "--data-dir", tiny_data_root], "demo": ["demo", "--data-dir", tmp_path / "data"]}
    for name, args in commands.items():
        results = tmp_path / name
        result = _invoke(*args, "--results-dir", results)
        assert result.exit_code == 130 and "interrupted" in result.output, (name, result.output)
        statuses = [row["status"] for row in _saved(results) if row["loss"] != "popularity"]
        assert statuses == ["interrupted"], (name, statuses)


@pytest.mark.parametrize("command", ["bench-step", "prepare"])
def test_sigterm_is_one_line_and_exit_130_in_every_command(command, tmp_path, monkeypatch):
    """In process: each command's work sends this process SIGTERM; the app's policy turns it into Ctrl-C."""
    import os
    import signal

    from rece_bench import bench_step, demo
    from rece_bench.data import prepare

    def terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    for module, name in ((demo, "run_demo"), (bench_step, "load_run_data"), (prepare, "prepare_dataset")):
        monkeypatch.setattr(module, name, terminate)
    args = {"demo": ["demo"], "bench-step": ["bench-step", "--dataset", "x"], "prepare": ["prepare", "synthetic"]}
    previous = signal.getsignal(signal.SIGTERM)
    results = [] if command == "prepare" else ["--results-dir", tmp_path / "results"]
    result = _invoke(*args[command], "--data-dir", tmp_path / "data", *results)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is the command's only
