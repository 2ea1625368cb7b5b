"""Smoke tests of `rece-bench losses` and `rece-bench bench-loss`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rece_bench.cli import app

runner = CliRunner()


def test_losses_lists_every_loss_and_parameter():
    result = runner.invoke(app, ["losses"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for word in ("ce_chunked", "ce_neg", "gbce", "rece", "n_extra_chunks", "rounds", "n_negatives"):
        assert word in result.output


def test_bench_loss_tiny_run_writes_rows(tmp_path):
    args = ["bench-loss", "--items", "60", "--positions", "30", "--dim", "8", "--loss", "rece", "--loss", "ce",
            "--param", "rece.rounds=2", "--repeats", "1", "--results-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "bench-loss").glob("*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [row["loss"] for row in rows] == ["rece", "ce"] and rows[0]["params"] == {"rounds": 2}


def test_bench_loss_bad_options_exit_2_with_one_line():
    for args in (["--items", "1e4,x"], ["--loss", "nosuch"], ["--param", "rece.rounds=0"], ["--device", "tpu"]):
        result = runner.invoke(app, ["bench-loss", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and "Traceback" not in result.output


def test_bench_loss_ops_and_profile_options(tmp_path):
    args = ["bench-loss", "--items", "60", "--positions", "30", "--dim", "8", "--loss", "rece", "--repeats", "1",
            "--ops", "--profile", str(tmp_path / "prof"), "--results-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args, terminal_width=250)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(next((tmp_path / "bench-loss").glob("*.json")).read_text())["rows"]
    assert "ops (data-dependent)" in result.output and f"{row['ops']['total']:,} (" in result.output
    assert (tmp_path / "prof" / "bench-loss-rece-C60.txt").is_file()
