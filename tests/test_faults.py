"""Fault injection: the real CLI in subprocesses, killed with SIGKILL at chosen points (``rece_bench.faults``).

Before the first checkpoint, mid-epoch, part-way through a checkpoint write and part-way through a result write:
afterwards no traceback, no half-written checkpoint or result, the report shows the run as killed, and where a
checkpoint existed `--resume` ends with exactly the metrics of an uninterrupted run (else it says to run again).
Each process pays for importing torch (and the memory tracker's dynamo, about 1.5 s of CPU), so the kills are
chained on one run, and the uninterrupted run it is compared with runs beside them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app

runner = CliRunner()
RUN = ["run", "--dataset", "tiny", "--epochs", "2", "--patience", "2", "--batch-size", "32", "--max-len", "12",
       "--dim", "16", "--seed", "7"]  # fmt: skip
KILLED = -signal.SIGKILL
# Run in each subprocess before the CLI: every training step is followed by faults.after_step (a step:N spec).
STEP_FAULT = """
from rece_bench import faults
from rece_bench.training import driver as train
step = train.train_step
def step_then_fault(*args, **kwargs):
    value = step(*args, **kwargs)
    faults.after_step()
    return value
train.train_step = step_then_fault
"""


def start(data: Path, results: Path, *extra: str, fault: str | None = None) -> subprocess.Popen:
    """``rece-bench run ...`` in a fresh process, one thread, optionally with a fault to die of."""
    env = {key: value for key, value in os.environ.items() if key != "RECE_BENCH_FAULT"}
    env |= {"OMP_NUM_THREADS": "1", "COLUMNS": "160", **({"RECE_BENCH_FAULT": fault} if fault else {})}
    code = STEP_FAULT + "import sys; from rece_bench.cli import app; sys.argv[0] = 'rece-bench'; app()"
    args = [*RUN, "--data-dir", str(data), "--results-dir", str(results), *extra]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(process: subprocess.Popen) -> int:
    out, err = process.communicate(timeout=300)
    assert b"Traceback" not in out + err, err.decode()
    return process.returncode


def train(data: Path, results: Path, *extra: str, fault: str | None = None) -> int:
    return finish(start(data, results, *extra, fault=fault))


def saved(results: Path) -> dict:
    (path,) = (results / "runs").glob("*.json")
    return json.loads(path.read_text())


def shown(results: Path) -> dict:
    """The run as `rece-bench report --format json` shows it; every result file must be readable."""
    report = runner.invoke(app, ["report", "--format", "json", "--results-dir", str(results)])
    assert report.exit_code == 0 and "could not be read" not in report.stderr, report.output
    (row,) = json.loads(report.stdout)
    return row


def assert_nothing_half_written(results: Path) -> None:
    from rece_bench.results import load_results
    from rece_bench.training.checkpoint import CHECKPOINTS_DIR, load_last

    assert load_results(results).unreadable == []
    for folder in (results / CHECKPOINTS_DIR).glob("*"):
        load_last(folder)  # raises on a damaged checkpoint


def temporaries(results: Path) -> list[str]:
    return sorted(p.name for p in results.rglob(".*.tmp"))


def same_run(resumed: dict, straight: dict) -> bool:
    losses = [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    return resumed["status"] == "ok" and resumed["metrics"] == straight["metrics"] and losses


@pytest.fixture(scope="module")
def straight(tiny_data_root, tmp_path_factory):
    """The uninterrupted run the others must match, started in the background at once."""
    results = tmp_path_factory.mktemp("straight")
    process = start(tiny_data_root, results)
    return lambda: (finish(process) == 0 or pytest.fail("the straight run failed")) and saved(results)


def killed_before_the_first_checkpoint(data: Path, results: Path) -> None:
    assert train(data, results, fault="step:2") == KILLED
    assert_nothing_half_written(results)
    first = saved(results)
    assert first["status"] == "running" and first["epochs"] == 0 and first["pid"] > 0 and first["host"]
    row = shown(results)
    assert row["status"] == "killed" and "before its first checkpoint: run it again" in row["message"]
    refused = runner.invoke(app, [*RUN, "--data-dir", str(data), "--results-dir", str(results), "--resume"])
    assert refused.exit_code == 2 and "nothing to resume" in refused.stderr and "Traceback" not in refused.output


def killed_mid_epoch(data: Path, results: Path) -> None:
    from rece_bench.data.loader import batches_per_epoch
    from rece_bench.training.driver import load_run_data

    steps = batches_per_epoch(load_run_data(data, "tiny", 12).train, 32)
    assert train(data, results, fault=f"step:{steps + 2}") == KILLED  # in epoch 2, epoch 1's checkpoint saved
    assert_nothing_half_written(results)
    row = shown(results)
    assert row["status"] == "killed" and row["epochs"] == 1 and "--resume continues it" in row["message"]


def killed_mid_checkpoint(data: Path, results: Path) -> None:
    assert train(data, results, "--resume", fault="write:last.pt:1:4096") == KILLED  # 4 KB into epoch 2's
    assert [name.startswith(".last.pt.") for name in temporaries(results)] == [True]  # it did die mid-write
    assert_nothing_half_written(results)  # epoch 1's checkpoint is whole
    assert shown(results)["epochs"] == 1


def killed_mid_result(data: Path, results: Path) -> None:
    assert train(data, results, "--resume", fault="write:*.json:2:50") == KILLED  # the update after epoch 2
    assert [".json." in name for name in temporaries(results)] == [True]  # it did die mid-write
    assert_nothing_half_written(results)  # the file as this session started it is whole
    row = shown(results)
    assert row["status"] == "killed" and row["epochs"] == 1 and "--resume continues it" in row["message"]


def test_a_run_killed_at_every_point_ends_as_an_uninterrupted_one(tiny_data_root, tmp_path, straight):
    killed_before_the_first_checkpoint(tiny_data_root, tmp_path)
    killed_mid_epoch(tiny_data_root, tmp_path)  # the fresh run the message asked for, killed in its turn
    killed_mid_checkpoint(tiny_data_root, tmp_path)
    killed_mid_result(tiny_data_root, tmp_path)
    assert train(tiny_data_root, tmp_path, "--resume") == 0  # epoch 2 is checkpointed: only the test is left
    assert same_run(saved(tmp_path), straight())
    assert temporaries(tmp_path) == []
