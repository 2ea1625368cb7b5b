"""Issue 12, as a careless user meets it: every bad state is one line and exit code 2, nothing is lost or hidden.

Each test drives the real command line (typer's CliRunner) and checks the exit code, that no traceback shows, and
that nothing half-written is left behind.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app

runner = CliRunner()
TINY_RUN = ["--epochs", "2", "--batch-size", "32", "--max-len", "12", "--dim", "16", "--seed", "7"]


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line_error(result, *needles) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def suggested_command(message: str) -> list[str]:
    """The first `rece-bench ...` command an error message suggests, as arguments for the app."""
    command = re.search(r"`(rece-bench [^`]+)`", message).group(1)
    return shlex.split(command)[1:]


def interrupted_run(data_root, results, tiny_config):
    """A run stopped by Ctrl-C after its first epoch: a result and a last checkpoint to resume from."""
    from rece_bench.training.driver import train_run

    class StopAfterFirstEpoch:
        def start(self, epochs, steps_per_epoch):
            pass

        def step(self, loss, peak_bytes):
            pass

        def epoch(self, epoch, train_loss, valid_ndcg):
            raise KeyboardInterrupt

    config = tiny_config(epochs=2, patience=10)  # what TINY_RUN gives on the command line
    with pytest.raises(KeyboardInterrupt):
        train_run(config, data_root, results, progress=StopAfterFirstEpoch())
    return config


# ---------------------------------------------------------------- damaged files


def test_resume_from_a_truncated_checkpoint_keeps_it_aside_and_says_to_run_again(tiny_data_root, tiny_config, tmp_path):
    from rece_bench.data.loader import dataset_identity
    from rece_bench.training.checkpoint import LAST, checkpoint_dir
    from rece_bench.training.session import run_id_of

    config = interrupted_run(tiny_data_root, tmp_path, tiny_config)
    folder = checkpoint_dir(tmp_path, run_id_of(config, dataset_identity(tiny_data_root, "tiny")))
    whole = (folder / LAST).read_bytes()
    (folder / LAST).write_bytes(whole[: len(whole) // 2])
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", tmp_path]
    message = one_line_error(invoke(*args, "--resume"), "checkpoint is damaged", "run again without --resume")
    (aside,) = folder.glob(f"{LAST}.damaged-*")
    assert aside.name in message and aside.read_bytes() == whole[: len(whole) // 2]  # kept, not deleted
    assert not (folder / LAST).exists()
    assert invoke(*args).exit_code == 0  # and running again works, the damaged file still kept
    assert aside.exists()


def test_a_checkpoint_that_is_no_checkpoint_is_damage_too(tiny_data_root, tiny_config, tmp_path):
    import torch

    from rece_bench.data.loader import dataset_identity
    from rece_bench.training.checkpoint import LAST, checkpoint_dir
    from rece_bench.training.session import run_id_of

    config = interrupted_run(tiny_data_root, tmp_path, tiny_config)
    last = checkpoint_dir(tmp_path, run_id_of(config, dataset_identity(tiny_data_root, "tiny"))) / LAST
    torch.save({"format": 2, "model": {}}, last)
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", tmp_path]
    one_line_error(invoke(*args, "--resume"), "no optimizer, state, rng, batch_rng in it", "without --resume")


def test_a_damaged_split_names_the_file_and_a_prepare_command_that_works(tmp_path):
    data, results = tmp_path / "data", tmp_path / "results"
    made = invoke("prepare", "synthetic", "--users", 300, "--items", 120, "--interactions", 6000, "--name", "mine",
                  "--data-dir", data)  # fmt: skip
    assert made.exit_code == 0, made.output
    train = data / "mine" / "train.parquet"
    train.write_bytes(train.read_bytes()[:-200])
    args = ["run", "--dataset", "mine", *TINY_RUN, "--data-dir", data, "--results-dir", results]
    message = one_line_error(invoke(*args), str(train), "rece-bench prepare synthetic")
    assert not results.exists()  # nothing trained, nothing written
    again = invoke(*suggested_command(message))
    assert again.exit_code == 0, again.output
    assert invoke(*args).exit_code == 0


def test_an_unknown_dataset_suggests_a_prepare_command_that_works(tmp_path):
    data = tmp_path / "data"
    args = ["run", "--dataset", "nosuch", *TINY_RUN, "--data-dir", data, "--results-dir", tmp_path / "results"]
    message = one_line_error(invoke(*args), "nosuch is not prepared")
    prepare = suggested_command(message)
    assert prepare[:2] == ["prepare", "synthetic"]
    assert invoke(*prepare, "--users", 300, "--items", 120, "--interactions", 6000).exit_code == 0
    assert invoke(*args).exit_code == 0


def test_a_dataset_name_that_is_a_path_names_the_option_run_has(tmp_path):
    message = one_line_error(invoke("run", "--dataset", "../evil", "--data-dir", tmp_path), "../evil", "--dataset")
    assert "--name" not in message


def test_an_uncreatable_results_dir_fails_before_any_training(tiny_data_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file")
    for command in (["run", "--dataset", "tiny", *TINY_RUN], ["run", "--dataset", "tiny", "--budget", "1GB"],
                    ["popularity", "--dataset", "tiny"], ["sweep", "--dataset", "tiny", "--loss", "ce"]):  # fmt: skip
        result = invoke(*command, "--data-dir", tiny_data_root, "--results-dir", blocker / "results")
        one_line_error(result, "cannot write results under", "is not a folder", "--results-dir")
    assert blocker.read_text() == "a regular file"


def test_report_names_the_result_files_it_cannot_read(tiny_data_root, tmp_path):
    assert (
        invoke("popularity", "--dataset", "tiny", "--data-dir", tiny_data_root, "--results-dir", tmp_path).exit_code
        == 0
    )
    runs = tmp_path / "runs"
    (good,) = runs.glob("*.json")
    (runs / "cut.json").write_text(good.read_text()[:40])
    (runs / "list.json").write_text("[1, 2]")
    (runs / "other.json").write_text('{"hello": "world"}')
    result = invoke("report", "--results-dir", tmp_path)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "3 result file(s) could not be read" in result.stderr
    for name, why in (("cut.json", "not valid JSON"), ("list.json", "not an object"), ("other.json", "not a run")):
        assert any(name in line and why in line for line in result.stderr.splitlines()), result.stderr
    assert "popularity" in result.stdout  # the readable one is still reported
    for n in range(4):
        (runs / f"more{n}.json").write_text("")
    many = invoke("report", "--format", "json", "--results-dir", tmp_path)
    assert "7 result file(s)" in many.stderr and "... and 2 more" in many.stderr
    assert len(json.loads(many.stdout)) == 1  # stdout stays machine-readable


# ---------------------------------------------------------------- the small ones


def test_version_option_and_command():
    from rece_bench import __version__

    assert invoke("--version").stdout.strip() == __version__
    assert invoke("version").stdout.strip() == __version__


def test_piped_output_follows_columns_and_datasets_fits_80_columns_whole():
    narrow = invoke("datasets", env={"COLUMNS": "80"})
    assert narrow.exit_code == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "…" not in narrow.stdout and "1,409,494" in narrow.stdout and "2,627,663" in narrow.stdout
    wide = invoke("datasets", env={"COLUMNS": "200"})
    assert max(len(line) for line in wide.stdout.splitlines()) > 80


def test_losses_lists_no_library_only_parameter():
    listing = invoke("losses", env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "n_negatives" in listing.stdout and "generator" not in listing.stdout


def test_csv_report_params_are_json(tiny_data_root, tmp_path):
    import csv
    import io

    args = ["run", "--dataset", "tiny", *TINY_RUN, "--epochs", "1", "--data-dir", tiny_data_root]
    assert invoke(*args, "--results-dir", tmp_path).exit_code == 0
    (row,) = csv.DictReader(io.StringIO(invoke("report", "--format", "csv", "--results-dir", tmp_path).stdout))
    assert json.loads(row["params"])["batch_size"] == 32


def test_report_and_plot_say_the_front_is_chosen_by_validation(tmp_path):
    from tests.test_report import hand_made_results

    root = hand_made_results(tmp_path / "results")
    markdown = invoke("report", "--format", "markdown", "--results-dir", root).stdout
    assert "| valid NDCG@10 | test NDCG@10 |" in markdown and "need not rise along the front" in markdown
    from rece_bench.report.plot import FRONT_CAPTION, fronts_figure
    from rece_bench.report.tables import configurations, pareto_fronts, results_frame
    from rece_bench.results import read_results

    figure = fronts_figure(pareto_fronts(configurations(results_frame(read_results(root)))))
    assert figure.get_suptitle() == FRONT_CAPTION and "validation" in FRONT_CAPTION


# ---------------------------------------------------------------- a run's life: running, epochs, one final status


def run_args(data_root, results):
    return ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", data_root, "--results-dir", results]


def only_result(results) -> dict:
    (path,) = (results / "runs").glob("*.json")
    return json.loads(path.read_text())


def test_the_result_exists_from_the_first_step_with_pid_and_host(tiny_data_root, tmp_path, monkeypatch):
    import os
    import socket

    from rece_bench.training import driver as train

    seen, real_step = [], train.train_step

    def step(*args):
        if not seen:
            seen.append(only_result(tmp_path))
        return real_step(*args)

    monkeypatch.setattr(train, "train_step", step)
    assert invoke(*run_args(tiny_data_root, tmp_path)).exit_code == 0
    (first,) = seen
    assert first["status"] == "running" and first["epochs"] == 0 and first["history"] == []
    assert first["pid"] == os.getpid() and first["host"] == socket.gethostname()
    final = only_result(tmp_path)
    assert final["status"] == "ok" and len(final["history"]) == 2 and final["created_at"] == first["created_at"]


def test_ctrl_c_before_the_first_checkpoint_says_run_again_and_resume_agrees(tiny_data_root, tmp_path, monkeypatch):
    from rece_bench.training import driver as train

    real_step, steps = train.train_step, []

    def step(*args):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(train, "train_step", step)
    stopped = invoke(*run_args(tiny_data_root, tmp_path))
    assert stopped.exit_code == 130 and "Traceback" not in stopped.output
    assert "before the first checkpoint" in stopped.stdout and "run the same command again" in stopped.stdout
    assert "--resume goes on" not in stopped.stdout
    saved = only_result(tmp_path)
    assert saved["status"] == "interrupted" and "before the first checkpoint" in saved["message"]
    monkeypatch.setattr(train, "train_step", real_step)
    one_line_error(invoke(*run_args(tiny_data_root, tmp_path), "--resume"),
                   "nothing to resume", "stopped before its first checkpoint", "without --resume")  # fmt: skip
    assert invoke(*run_args(tiny_data_root, tmp_path)).exit_code == 0


def test_ctrl_c_after_a_checkpoint_says_resume_and_resume_goes_on(tiny_data_root, tiny_config, tmp_path):
    interrupted_run(tiny_data_root, tmp_path, tiny_config)
    assert "--resume goes on" in only_result(tmp_path)["message"]
    report = invoke("report", "--results-dir", tmp_path, env={"COLUMNS": "250"})
    assert report.exit_code == 0 and "every run and its status" in report.stdout and "interrupted" in report.stdout
    resumed = invoke(*run_args(tiny_data_root, tmp_path), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert only_result(tmp_path)["status"] == "ok"


def test_resume_of_a_finished_run_says_where_its_result_is(tiny_data_root, tmp_path):
    assert invoke(*run_args(tiny_data_root, tmp_path)).exit_code == 0
    (path,) = (tmp_path / "runs").glob("*.json")
    one_line_error(invoke(*run_args(tiny_data_root, tmp_path), "--resume"), "already finished (status ok)", str(path))
    one_line_error(invoke(*run_args(tiny_data_root, tmp_path / "empty"), "--resume"),
                   "nothing to resume: no run of this configuration")  # fmt: skip


def _planted(results, tiny_data_root, **fields) -> dict:
    """A finished tiny run's result file, rewritten as if it were still running with ``fields``."""
    assert invoke(*run_args(tiny_data_root, results)).exit_code == 0
    (path,) = (results / "runs").glob("*.json")
    data = {**json.loads(path.read_text()), "status": "running", "metrics": {}, "valid_metrics": {}, **fields}
    path.write_text(json.dumps(data))
    return data


def test_report_tells_running_from_killed_and_shows_every_run(tiny_data_root, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    cases = {"killed": (int(gone.stdout), host), "running": (os.getpid(), host), "elsewhere": (1, "another-host")}
    for name, (pid, on) in cases.items():
        _planted(tmp_path / name, tiny_data_root, pid=pid, host=on, process_start=None, epochs=0, history=[])
    killed = invoke("report", "--format", "markdown", "--results-dir", tmp_path / "killed").stdout
    assert "every run and its status" in killed and "| killed |" in killed and "no finished run" in killed
    assert f"pid {gone.stdout.strip()} on {host}) ended before its first checkpoint: run it again" in killed
    assert "| running |" in invoke("report", "--format", "markdown", "--results-dir", tmp_path / "running").stdout
    assert "| running |" in invoke("report", "--format", "markdown", "--results-dir", tmp_path / "elsewhere").stdout
    rows = json.loads(invoke("report", "--format", "json", "--results-dir", tmp_path / "killed").stdout)
    assert [r["status"] for r in rows] == ["killed"] and rows[0]["pid"] == int(gone.stdout)


def test_a_run_that_is_running_here_is_not_started_twice(tiny_data_root, tmp_path):
    import os

    _planted(tmp_path, tiny_data_root, pid=os.getpid(), process_start=None)
    for extra in ([], ["--resume"]):
        one_line_error(invoke(*run_args(tiny_data_root, tmp_path), *extra), "is already running", f"pid {os.getpid()}")


def test_a_late_user_error_leaves_the_results_as_they_were(tiny_data_root, tiny_config, tmp_path, monkeypatch):
    from rece_bench.errors import UserError
    from rece_bench.training import driver as train

    def bad_input(*args):
        raise UserError("n_negatives=64 exceeds the 63 items some user has not seen: choose n_negatives <= 63")

    monkeypatch.setattr(train, "train_step", bad_input)
    one_line_error(invoke(*run_args(tiny_data_root, tmp_path)), "n_negatives")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))
    monkeypatch.undo()
    interrupted_run(tiny_data_root, tmp_path, tiny_config)
    before = only_result(tmp_path)
    monkeypatch.setattr(train, "train_step", bad_input)
    one_line_error(invoke(*run_args(tiny_data_root, tmp_path), "--resume"), "n_negatives")
    assert only_result(tmp_path) == before  # the interrupted result, as it was, still resumable


def test_a_loss_that_blows_up_but_stays_finite_is_diverged(tiny_data_root, tiny_config, tmp_path):
    from rece_bench.training.driver import train_run

    result = train_run(tiny_config(lr=10.0, epochs=4), tiny_data_root, tmp_path)
    assert result.status == "diverged" and "over 10x the first step's" in result.message and "--lr" in result.message
    assert result.metrics == {} and only_result(tmp_path)["status"] == "diverged"
