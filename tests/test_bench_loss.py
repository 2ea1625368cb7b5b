"""The loss benchmark library on tiny sizes."""

from __future__ import annotations

import json

import pytest

from rece_bench.bench import loss as bench_loss
from rece_bench.bench.loss import BenchLossConfig, parse_items, parse_param, run_bench_loss
from rece_bench.errors import UserError
from rece_bench.losses.base import lookup


def tiny(**changes) -> BenchLossConfig:
    base = {"items": (50, 80), "positions": 40, "dim": 8, "repeats": 2, "seq_len": 10}
    return BenchLossConfig(**{**base, **changes})


def test_runs_every_loss_and_saves_rows_atomically(tmp_path):
    params = (
        ("rece", "rounds", 2),
        ("bce", "n_negatives", 4),
        ("ce_neg", "n_negatives", 4),
        ("gbce", "n_negatives", 4),
    )
    result = run_bench_loss(tiny(params=params, threads=1), tmp_path)
    names = bench_loss.all_losses()  # every registered loss, in report order
    assert [(r.loss, r.num_items) for r in result.rows][: len(names)] == [(name, 50) for name in names]
    assert len(result.rows) == 2 * len(names)
    runnable = {name for name in names if lookup(name).unavailable_reason("cpu", "fp32") is None}
    assert runnable >= {"ce", "ce_chunked", "ce_neg", "bce", "gbce", "rece", "sce", "ce_logq"}
    for row in result.rows:
        if row.loss not in runnable:  # cce, liger_ce without a GPU: recorded as skipped, with the reason
            assert row.status == "skipped" and row.note.startswith("unavailable: ") and row.peak_bytes is None
            continue
        assert row.status == "ok" and row.loss_value > 0 and row.median_time_s > 0 and len(row.times_s) == 1
        assert row.peak_bytes >= row.inputs_bytes > 0
        assert row.peak_beyond_inputs_bytes == row.peak_bytes - row.inputs_bytes
    saved = json.loads(result.path.read_text())
    assert result.path.parent.name == "bench-loss" and len(saved["rows"]) == 2 * len(names)
    last_rece = [row for row in saved["rows"] if row["loss"] == "rece"][-1]
    assert last_rece["params"] == {"rounds": 2} and last_rece["num_items"] == 80 and saved["config"]["positions"] == 40


def test_a_loss_that_would_not_fit_is_skipped(monkeypatch):
    monkeypatch.setattr(bench_loss, "free_memory_bytes", lambda device: 1000)
    (row,) = run_bench_loss(tiny(items=(50,), losses=("ce",)), None).rows
    assert row.status == "skipped" and row.note.startswith("skipped (needs ") and row.peak_bytes is None


def test_same_seed_same_loss_values():
    config = tiny(items=(60,), losses=("rece", "bce"), params=(("bce", "n_negatives", 3),), repeats=1)
    first, second = run_bench_loss(config, None).rows, run_bench_loss(config, None).rows
    assert [r.loss_value for r in first] == [r.loss_value for r in second]


def test_parsers():
    assert parse_items("1e4, 1e5,300") == (10_000, 100_000, 300)
    assert parse_param("rece.rounds=8") == ("rece", "rounds", 8)
    assert parse_param("rece.n_buckets=none") == ("rece", "n_buckets", None)
    assert parse_param("gbce.t=0.9") == ("gbce", "t", 0.9)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: parse_items("1e4,abc"), "got 'abc'"),
        (lambda: parse_items("2.5"), "whole numbers"),
        (lambda: parse_param("rece.rounds"), "LOSS.NAME=VALUE"),
        (lambda: parse_param("rece.rounds=1.5"), "whole number"),
        (lambda: parse_param("rece.generator=1"), "no settable parameter 'generator'"),
        (lambda: parse_param("nosuch.rounds=1"), "unknown loss 'nosuch'"),
        (lambda: tiny(repeats=0), "repeats must be"),
        (lambda: tiny(losses=("ce",), params=(("rece", "rounds", 2),)), "not benchmarked"),
        (lambda: tiny(losses=("rece",), params=(("rece", "rounds", 0),)), "rounds must be >= 1, got 0"),
    ],
)
def test_bad_options_are_user_errors(call, pattern):
    with pytest.raises(UserError, match=pattern):
        call()


def test_threads_are_restored_after_the_run():
    import torch

    before = torch.get_num_threads()
    result = run_bench_loss(tiny(items=(50,), losses=("rece",), threads=1), None)
    assert result.extra["threads"] == 1 and torch.get_num_threads() == before


def test_ops_and_profile_add_a_count_and_a_table_per_row(tmp_path):
    """--ops counts one forward+backward (total = the sum by op); --profile writes the profiler's table per row."""
    config = tiny(items=(50,), losses=("ce", "rece"), params=(("rece", "rounds", 2),), ops=True, profile_dir=tmp_path)
    result = run_bench_loss(config, tmp_path)
    for row in result.rows:
        assert row.ops["total"] == sum(row.ops["by_op"].values()) > 0
        assert row.ops["data_dependent"] == sum(row.ops["data_dependent_by_op"].values())
        assert row.ops["by_op"]["aten.mm" if row.loss == "ce" else "aten.bmm"] >= 2  # forward and backward
        text = (tmp_path / f"bench-loss-{row.loss}-C50.txt").read_text()
        assert row.profile_path == str(tmp_path / f"bench-loss-{row.loss}-C50.txt")
        assert text.startswith(f"bench-loss {row.loss}-C50") and "Self CPU" in text
    saved = json.loads(result.path.read_text())["rows"]
    assert [row["ops"]["total"] for row in saved] == [row.ops["total"] for row in result.rows]
    plain = run_bench_loss(tiny(items=(50,), losses=("ce",)), None).rows[0]
    assert plain.ops is None and plain.profile_path is None
