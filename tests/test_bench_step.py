import statistics

import pytest

from rece_bench.bench.step import StepBenchConfig, run_step_benchmark
from rece_bench.cli.bench import parse_loss_config
from rece_bench.errors import UserError


def test_every_configuration_sees_the_same_batches_and_gets_a_row(tiny_data_root):
    configs = (("ce", {}), ("bce", {"n_negatives": 8}), ("rece", {"n_extra_chunks": 1, "rounds": 2}))
    config = StepBenchConfig("tiny", tiny_data_root, configs, batch_size=16, max_len=12, dim=16, steps=2)
    rows = run_step_benchmark(config)
    assert [r.loss for r in rows] == ["ce", "bce", "rece"]
    assert len({r.positions for r in rows}) == 1  # same batches for every loss
    for row in rows:
        assert row.step_time_s > 0 and row.peak_bytes > 0 and row.positions_per_s > 0
        assert len(row.step_times_s) == 2 and row.step_time_s == statistics.median(row.step_times_s)
        assert 0 <= row.data_share < 5
    assert rows[0].sampling_time_s == 0 and rows[1].sampling_time_s > 0


def test_parse_loss_config():
    assert parse_loss_config("rece:n_extra_chunks=3,rounds=8") == ("rece", {"n_extra_chunks": 3, "rounds": 8})
    assert parse_loss_config("ce") == ("ce", {})
    with pytest.raises(UserError, match="no loss name"):
        parse_loss_config(":rounds=2")


def test_too_few_batches_is_a_clear_error(tiny_data_root):
    config = StepBenchConfig("tiny", tiny_data_root, (("ce", {}),), batch_size=200, max_len=12, dim=16, steps=3)
    with pytest.raises(UserError, match="lower --steps or --batch-size"):
        run_step_benchmark(config)


def test_the_table_shows_each_median_with_its_spread():
    from rece_bench.bench.step import StepBenchRow
    from rece_bench.cli.bench import step_table
    from rece_bench.cli.common import console

    row = StepBenchRow("d", "ce", {}, 10, 4, 100.0, 2.0, 50.0, 1 << 20, 0.0, 0.0, "cpu", (2.5, 1.5, 2.0))
    with console.capture() as captured:
        console.print(step_table([row]))
    assert "2.00 (1.50-2.50)" in captured.get()


def test_the_command_saves_each_row_as_it_lands(tiny_data_root, tmp_path, monkeypatch):
    """A bench-step stopped by a time limit (benchmarks/gpu_check.sh) keeps the rows it finished."""
    import json

    from typer.testing import CliRunner

    import rece_bench.bench.step as bench_step
    from rece_bench.cli import app

    real = bench_step.bench_one
    calls = []

    def stop_at_the_second(*args, **kwargs):
        calls.append(args[4])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a SIGINT from `timeout` would land
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_step, "bench_one", stop_at_the_second)
    args = ["bench-step", "--dataset", "tiny", "--config", "ce", "--config", "rece:rounds=2", "--batch-size", "16",
            "--max-len", "12", "--steps", "1", "--data-dir", tiny_data_root, "--results-dir", tmp_path]  # fmt: skip
    CliRunner().invoke(app, [str(a) for a in args])
    saved = list((tmp_path / "bench-step").glob("tiny-*.json"))
    assert len(saved) == 1
    assert [row["loss"] for row in json.loads(saved[0].read_text())] == ["ce"]


def test_ops_and_profile_count_and_profile_one_step(tiny_data_root, tmp_path):
    configs = (("ce", {}), ("rece", {"rounds": 2}))
    config = StepBenchConfig(
        "tiny", tiny_data_root, configs, batch_size=16, max_len=12, dim=16, steps=1, ops=True, profile_dir=tmp_path
    )
    rows = run_step_benchmark(config)
    for row in rows:
        assert row.ops["total"] == sum(row.ops["by_op"].values()) and row.ops["by_op"]["aten._foreach_add_"] >= 1
        assert "Self CPU" in (tmp_path / row.profile_path).read_text()
    assert rows[1].ops["total"] > rows[0].ops["total"]  # RECE's rounds launch more than CE's one product
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == [
        "bench-step-tiny-ce.txt",
        "bench-step-tiny-rece-rounds2.txt",
    ]


def test_the_table_shows_the_op_counts_when_counted():
    from rece_bench.bench.step import StepBenchRow
    from rece_bench.cli.bench import step_table
    from rece_bench.cli.common import console

    ops = {"total": 1234, "data_dependent": 5, "by_op": {}, "data_dependent_by_op": {}}
    row = StepBenchRow("d", "ce", {}, 10, 4, 100.0, 2.0, 50.0, 1 << 20, 0.0, 0.0, "cpu", (2.0,), ops=ops)
    with console.capture() as captured:
        console.print(step_table([row]))
    assert "ops (data-dependent)" in captured.get() and "1,234 (5)" in captured.get()
