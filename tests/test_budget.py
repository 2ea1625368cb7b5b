"""Budgets: size parsing, the ladders, the choice with a fake probe, over_budget, and a real probe on tiny data."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

from rece_bench.budget import fit
from rece_bench.budget.choice import NothingFits, Probe, choose
from rece_bench.budget.fit import train_within_budget
from rece_bench.budget.ladder import Candidate, Ladder, ladder_for, read_grid
from rece_bench.budget.plan import Budget
from rece_bench.budget.probe import Prober
from rece_bench.budget.sizes import format_size, parse_size
from rece_bench.cli import app
from rece_bench.errors import UserError
from rece_bench.losses.cards import CARDS
from rece_bench.results import RunResult, read_results, within_budget, write_result

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512 * 10**6),
        ("2GB", 2 * 10**9),
        ("2GiB", 2 * 2**30),
        ("1.5e9", 1_500_000_000),
        ("300 mb", 300 * 10**6),
        ("64KiB", 64 * 1024),
        ("0.5GB", 500 * 10**6),
        ("1M", 10**6),
        ("123", 123),
        (4096, 4096),
    ],
)
def test_sizes_take_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "2 GBs", "GB", "1e999", "nan", "1..5GB", "2 G B", "5XB"])
def test_garbage_sizes_are_refused_with_the_value_and_an_example(text):
    with pytest.raises(UserError, match=r"512MB, 2GB, 2GiB or 1\.5e9") as caught:
        parse_size(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("text", ["0", "0GB", "-1MB", "-5", "0.1"])
def test_zero_negative_and_sub_byte_sizes_are_refused(text):
    with pytest.raises(UserError, match="positive size"):
        parse_size(text)


def test_format_size_shows_a_budget_as_written():
    assert format_size(300 * 10**6) == "300 MB"
    assert format_size(2 * 2**30) == "2 GiB"
    assert format_size(1_500_000_000) == "1.5 GB"


@pytest.mark.parametrize("loss", sorted(name for name, card in CARDS.items() if card.ladder is not None))
def test_every_ladder_shrinks_every_knob_monotonically(loss):
    candidates = ladder_for(loss).candidates()
    assert len(candidates) == len({c.label() for c in candidates}) >= 7
    for bigger, smaller in zip(candidates, candidates[1:], strict=False):
        assert all(smaller.knobs()[k] <= v for k, v in bigger.knobs().items())
        assert smaller.knobs() != bigger.knobs()


def test_a_ladder_that_cuts_upwards_or_an_unknown_knob_is_refused():
    with pytest.raises(UserError, match="not below"):
        Ladder({"batch_size": 64}, (("batch_size", (128,)),))
    with pytest.raises(UserError, match="names no knob"):
        Ladder({"batch_size": 64}, (("rounds", (2,)),))


def _fake_probe(peaks: list[int | None], calls: list[int]):
    def probe(candidate: Candidate) -> Probe:
        index = candidate.batch_size  # the fake ladder numbers its candidates by batch size
        calls.append(index)
        return Probe(candidate, peaks[index], 0.5)

    return probe


def _numbered(n: int) -> list[Candidate]:
    return [Candidate(i, {}) for i in range(n)]


@pytest.mark.parametrize("budget", [1, 150, 555, 800, 999, 1000, 5000])
def test_choice_is_the_first_candidate_that_fits_in_few_probes(budget):
    peaks = [1000 - 100 * i for i in range(10)]  # 1000, 900, ..., 100: falling along the ladder
    calls: list[int] = []
    if budget < 100:
        with pytest.raises(NothingFits, match="needs 100 B"):
            choose("ce", _numbered(10), budget, _fake_probe(peaks, calls), headroom_fraction=0.0)
        assert calls == [9]  # the cheapest is probed first
        return
    choice = choose("ce", _numbered(10), budget, _fake_probe(peaks, calls), headroom_fraction=0.0)
    expected = next(i for i, peak in enumerate(peaks) if peak <= budget)
    assert choice.candidate.batch_size == expected and choice.peak_bytes == peaks[expected]
    assert len(calls) <= 1 + math.ceil(math.log2(10)) and len(set(calls)) == len(calls)
    assert choice.probe_time_s == pytest.approx(0.5 * len(calls))


def test_headroom_keeps_a_margin_below_the_budget():
    peaks = [1000, 960, 900]
    choice = choose("ce", _numbered(3), 1000, _fake_probe(peaks, []), headroom_fraction=0.05)
    assert choice.candidate.batch_size == 2 and choice.limit_bytes == 950


def test_a_probe_that_runs_out_of_memory_does_not_fit():
    peaks = [None, None, 300]
    choice = choose("ce", _numbered(3), 1000, _fake_probe(peaks, []), headroom_fraction=0.0)
    assert choice.candidate.batch_size == 2
    with pytest.raises(NothingFits, match="more than the device has"):
        choose("ce", _numbered(3), 1000, _fake_probe([None, None, None], []))


def test_nothing_fits_names_the_smallest_candidate_and_its_need():
    ladder = ladder_for("rece")
    smallest = ladder.candidates()[-1]
    with pytest.raises(NothingFits) as caught:
        choose("rece", ladder.candidates(), 10**6, lambda c: Probe(c, 19 * 2**20, 0.1))
    message = str(caught.value)
    assert "1 MB" in message and "19.0 MiB" in message and smallest.label() in message
    assert "--budget 22MB" in message  # 19 MiB = 19.9 MB, plus 10% headroom


def _fake_trainer(peak_bytes: int):
    def train(config, data_root, results_root, progress=None, resume=False):
        from rece_bench.training.session import run_id_of

        result = RunResult(
            run_id=run_id_of(config), dataset=config.dataset, loss=config.loss, params=config.hyperparameters(),
            seed=config.seed, device="cpu", status="ok", metrics={"ndcg@10": 0.1}, peak_bytes=peak_bytes,
            train_time_s=10.0, epochs=1, budget_bytes=config.budget_bytes,
        )  # fmt: skip
        write_result(results_root, result)
        return result

    return train


def test_a_training_peak_above_the_budget_is_over_budget_written_once(
    tiny_data_root, tiny_config, tmp_path, monkeypatch
):
    from rece_bench import results

    statuses, real_write = [], results.write_result
    monkeypatch.setattr(results, "write_result", lambda root, r: statuses.append(r.status) or real_write(root, r))
    monkeypatch.setattr(fit, "Prober", lambda *args, **kwargs: lambda c: Probe(c, 10 * c.batch_size, 0.2))
    done = train_within_budget(tiny_config(loss="ce", epochs=2), Budget(1000), tiny_data_root, tmp_path)
    assert done.choice.candidate.batch_size == 64  # 640 B probed: the first that fits 950 B
    assert done.result.status == "over_budget" and "above the budget of 1 kB" in done.result.message
    assert statuses == ["running", "running", "running", "over_budget"]  # start, 2 epochs, the final status once
    [row] = read_results(tmp_path)
    assert row["status"] == "over_budget" and row["budget_bytes"] == 1000 and row["params"]["batch_size"] == 64
    assert done.probe_ratio == pytest.approx(done.choice.probe_time_s / done.result.train_time_s)
    record = json.loads((tmp_path / "budget" / f"{done.result.run_id}.json").read_text())
    assert record["chosen"] == {"batch_size": 64} and record["probed_peak_bytes"] == 640


def test_a_peak_within_the_budget_stays_ok():
    result = RunResult("r", "d", "ce", {}, 1, "cpu", "ok", peak_bytes=900, budget_bytes=1000)
    assert within_budget(result) is result
    assert within_budget(dataclasses.replace(result, peak_bytes=1001)).status == "over_budget"


def test_a_real_budgeted_run_fits_and_caches_its_probes(tiny_data_root, tiny_config, tmp_path):
    config = tiny_config(loss="rece", epochs=1)
    ladder = {"rece": Ladder({"batch_size": 64, "rounds": 4}, (("rounds", (1,)), ("batch_size", (16,))))}
    probe = Prober(config, tiny_data_root, tmp_path)
    largest = probe(ladder["rece"].candidates()[0]).peak_bytes
    budget = largest - 1  # only the smaller candidates fit
    done = train_within_budget(config, Budget(budget, ladder, headroom_fraction=0.0), tiny_data_root, tmp_path)
    assert done.result.status == "ok" and done.result.peak_bytes <= budget
    assert done.choice.candidate.knobs() != ladder["rece"].candidates()[0].knobs()
    assert done.result.params["budget_bytes"] == budget and done.result.budget_bytes == budget
    again = Prober(config, tiny_data_root, tmp_path)
    assert all(again(c).cached for c in ladder["rece"].candidates()[:1])


def test_a_toml_grid_replaces_a_ladder(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text("[rece]\nbatch_size = 128\nrounds = 8\ncuts = [{rounds = [2, 1]}, {batch_size = [32]}]\n")
    ladder = read_grid(path)["rece"]
    labels = [c.label() for c in ladder.candidates()]
    assert labels == ["batch 128, r 8", "batch 128, r 2", "batch 128, r 1", "batch 32, r 1"]
    path.write_text("[rece]\nbatch_size = 128\ncuts = [{rounds = [2]}]\n")
    with pytest.raises(UserError, match="names no knob"):
        read_grid(path)
    path.write_text("[rece\n")
    with pytest.raises(UserError, match="not valid TOML"):
        read_grid(path)


def test_cli_run_with_a_bad_or_too_small_budget_exits_2(tiny_data_root, tmp_path):
    base = ["run", "--dataset", "tiny", "--data-dir", str(tiny_data_root), "--results-dir", str(tmp_path)]
    result = runner.invoke(app, [*base, "--budget", "lots"], terminal_width=200)
    assert result.exit_code == 2 and "'lots' is not a size" in result.output and "2GiB" in result.output
    result = runner.invoke(app, [*base, "--budget", "1kB", "--max-len", "12", "--dim", "16"], terminal_width=200)
    assert result.exit_code == 2 and "nothing fits a budget of 1 kB" in result.output and "needs" in result.output
    result = runner.invoke(app, [*base, "--budget", "1GB", "--batch-size", "8"], terminal_width=200)
    assert result.exit_code == 2 and "--budget chooses batch_size" in result.output


def test_cli_run_with_a_budget_trains_the_choice(tiny_data_root, tmp_path):
    args = ["run", "--dataset", "tiny", "--loss", "ce", "--budget", "2GB", "--epochs", "1", "--max-len", "12",
            "--dim", "16", "--data-dir", str(tiny_data_root), "--results-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "chose batch 256" in result.output and "% of training" in result.output
    [row] = read_results(tmp_path)
    assert row["budget_bytes"] == 2 * 10**9 and row["params"]["batch_size"] == 256 and row["status"] == "ok"


def test_candidates_a_small_catalogue_does_not_allow_are_dropped():
    from rece_bench.budget.ladder import usable_candidates

    kept = usable_candidates("bce", ladder_for("bce").candidates(), num_items=500)
    assert kept and all(c.loss_params["n_negatives"] <= 500 for c in kept)
    assert len(kept) == len(ladder_for("bce").candidates()) - 3  # batch 256, 128 and 64 with 1,024 negatives


def test_the_demo_fits_each_loss_to_its_budget(tmp_path):
    import contextlib

    from rece_bench.bench.demo import DemoConfig, run_demo
    from rece_bench.report.tables import report_sections, results_frame

    class Silent:
        def start(self, epochs, steps_per_epoch): ...
        def step(self, loss, peak_bytes): ...
        def epoch(self, epoch, train_loss, valid_ndcg): ...

    config = DemoConfig(
        tmp_path / "data", tmp_path / "results", users=200, items=80, interactions=4_000, losses=("ce", "rece"),
        budget_bytes=8 * 10**6, epochs=1, max_len=12,
    )  # fmt: skip
    runs = run_demo(config, lambda loss: contextlib.nullcontext(Silent()))
    assert [run.result.loss for run in runs] == ["popularity", "ce", "rece"]
    for run in runs[1:]:
        assert run.choice is not None and run.result.budget_bytes == 8 * 10**6
        assert run.result.status == "ok" and run.result.peak_bytes <= 8 * 10**6
    titles = [s.title for s in report_sections(results_frame([run.result.to_row() for run in runs]))]
    assert titles == ["demo: Table 2, the best configuration of each loss within 8 MB (7.6 MiB)",
                      "demo: Pareto front of each loss, peak memory -> best validation NDCG@10"]  # fmt: skip


@pytest.mark.parametrize("changed", ["loss", "model"])
def test_a_new_loss_or_model_revision_redoes_cached_probes(changed, tiny_data_root, tiny_config, tmp_path, monkeypatch):
    from rece_bench.losses.rece import ReducedCrossEntropy
    from rece_bench.models.sasrec import SASRec

    config = tiny_config(loss="rece", epochs=1)
    candidate = Ladder({"batch_size": 16, "rounds": 1}, ()).candidates()[0]
    assert not Prober(config, tiny_data_root, tmp_path)(candidate).cached
    assert Prober(config, tiny_data_root, tmp_path)(candidate).cached
    revised = ReducedCrossEntropy if changed == "loss" else SASRec
    monkeypatch.setattr(revised, "revision", revised.revision + 1)
    assert not Prober(config, tiny_data_root, tmp_path)(candidate).cached  # measured again, not reused


@pytest.mark.parametrize("text", ["", '{"peak_bytes": ', "[]", '{"peak_bytes": "lots"}'], ids=repr)
def test_a_damaged_probe_cache_is_probed_again(text, tiny_data_root, tiny_config, tmp_path):
    config = tiny_config(loss="ce", epochs=1)
    candidate = Ladder({"batch_size": 16}, ()).candidates()[0]
    first = Prober(config, tiny_data_root, tmp_path)(candidate)
    (cache,) = (tmp_path / "probes").glob("*.json")
    cache.write_text(text)
    again = Prober(config, tiny_data_root, tmp_path)(candidate)
    assert not again.cached and again.peak_bytes == first.peak_bytes
    assert Prober(config, tiny_data_root, tmp_path)(candidate).cached  # the cache was written anew


def test_a_grid_that_is_missing_or_not_toml_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"cannot read .*absent\.toml \(it is missing\): pass an existing TOML"):
        read_grid(tmp_path / "absent.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not valid TOML"):
        read_grid(tmp_path / "bin.toml")
