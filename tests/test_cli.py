"""CLI smoke tests: prepare -> run -> report, and bad input as one line with exit code 2."""

import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app

runner = CliRunner()
TINY_SYNTHETIC = ["--users", "300", "--items", "120", "--interactions", "6000"]
TINY_RUN = ["--epochs", "2", "--batch-size", "32", "--max-len", "12", "--dim", "16"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_prepare_run_report_end_to_end(tmp_path):
    data, results = tmp_path / "data", tmp_path / "results"
    prepared = _invoke("prepare", "synthetic", *TINY_SYNTHETIC, "--data-dir", data)
    assert prepared.exit_code == 0, prepared.output
    ran = _invoke("run", "--dataset", "synthetic", *TINY_RUN, "--data-dir", data, "--results-dir", results)
    assert ran.exit_code == 0, ran.output
    report = _invoke("report", "--format", "json", "--results-dir", results)
    assert report.exit_code == 0, report.output
    rows = json.loads(report.output)
    assert len(rows) == 1
    row = rows[0]
    for key in ("dataset", "loss", "status", "ndcg@10", "hr@10", "peak_bytes", "train_time_s", "epochs", "params"):
        assert key in row
    assert row["status"] == "ok" and row["epochs"] == 2 and row["params"]["batch_size"] == 32
    table = _invoke("report", "--results-dir", results)
    assert table.exit_code == 0 and "synthetic" in table.output


def test_run_with_a_loss_parameter_and_resume_from_the_cli(tmp_path, tiny_data_root):
    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", "--loss", "rece", "-p", "n_extra_chunks=1", "-p", "rounds=2", *TINY_RUN]
    ran = _invoke(*args, "--data-dir", tiny_data_root, "--results-dir", results)
    assert ran.exit_code == 0, ran.output
    saved = json.loads(next((results / "runs").glob("*.json")).read_text())
    assert saved["params"]["loss.rounds"] == 2 and saved["loss"] == "rece"


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) <= 2, text  # one message (may wrap once)
    for needle in needles:
        assert needle in text


def test_bad_inputs_give_one_line_errors(tmp_path, tiny_data_root):
    results = tmp_path / "results"
    _one_line_error(_invoke("run", "--dataset", "nope", "--data-dir", tmp_path, "--results-dir", results),
                    "not prepared", "rece-bench prepare synthetic --name nope")  # fmt: skip
    _one_line_error(_invoke("run", "--dataset", "tiny", "--batch-size", "-4", "--data-dir", tiny_data_root),
                    "batch_size", "-4")  # fmt: skip
    _one_line_error(_invoke("run", "--dataset", "tiny", "--loss", "softmax", "--data-dir", tiny_data_root),
                    "unknown loss", "rece")  # fmt: skip
    _one_line_error(_invoke("run", "--dataset", "tiny", "-p", "rounds", "--data-dir", tiny_data_root), "KEY=VALUE")
    _one_line_error(_invoke("run", "--dataset", "tiny", "--loss", "rece", "-p", "bogus=1",
                            "--data-dir", tiny_data_root, "--results-dir", results), "bogus")  # fmt: skip
    _one_line_error(_invoke("prepare", "nosuchset", "--data-dir", tmp_path), "nosuchset")
    _one_line_error(_invoke("run", "--dataset", "tiny", "--device", "cuda", "--data-dir", tiny_data_root), "cuda")
    _one_line_error(_invoke("report", "--format", "yaml", "--results-dir", results), "yaml")
    assert not (results / "runs").exists()  # nothing half written


def test_an_unwritable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _invoke("prepare", "synthetic", *TINY_SYNTHETIC, "--data-dir", blocker / "data")
    _one_line_error(result)


def test_help_is_instant_and_does_not_import_torch():
    code = (
        "import sys, rece_bench.cli; rece_bench.cli.app(['--help'], standalone_mode=False); "
        "print('torch' in sys.modules)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
    assert time.perf_counter() - started < 5  # generous for a loaded CI machine; typically ~0.3 s


@pytest.mark.parametrize(
    "command", ["run", "report", "demo", "prepare", "datasets", "losses", "bench-step", "popularity"]
)
def test_every_command_has_help(command):
    assert _invoke(command, "--help").exit_code == 0


def test_wrong_parameter_type_and_an_older_dataset_format_are_one_line_errors(tmp_path, tiny_data_root):
    import json
    import shutil

    _one_line_error(_invoke("run", "--dataset", "tiny", "--loss", "rece", "-p", "rounds=many",
                            "--data-dir", tiny_data_root, "--results-dir", tmp_path / "r"), "rounds")  # fmt: skip
    old_root = tmp_path / "data"
    shutil.copytree(tiny_data_root / "tiny", old_root / "tiny")
    meta_path = old_root / "tiny" / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format_version": 0}))
    result = _invoke("run", "--dataset", "tiny", "--data-dir", old_root, "--results-dir", tmp_path / "r")
    _one_line_error(result, "format version 0", "`rece-bench prepare synthetic --name tiny --users 300 --items 120 "
                    f"--interactions 6000 --seed 3 --data-dir {old_root} --force`")  # fmt: skip
    assert not (tmp_path / "r" / "runs").exists()
