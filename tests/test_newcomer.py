"""Issue 23, what a newcomer met: fair timings by default (threads), a report that compares like with like, no lost
progress (locks, --restart, signals), a tour that runs, and the faults that still gave tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

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
