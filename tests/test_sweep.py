"""Sweeps with a fake trainer and a fake probe: the plan, skipping what is done, and a restart after a kill."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rece_bench.budget.choice import Probe
from rece_bench.cli import app
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.results import RunResult, read_results, write_result
from rece_bench.sweep.grid import Job, SweepConfig, plan_jobs, run_sweep, schedule
from rece_bench.training.checkpoint import LAST, checkpoint_dir

runner = CliRunner()
MB = 10**6


def _peak(config: TrainConfig) -> int:
    """A made-up memory model: 1 MB per sequence in the batch, more with rounds or negatives."""
    extra = config.loss_params.get("rounds", 1) + config.loss_params.get("n_negatives", 0) // 256
    return config.batch_size * MB * extra


def _probe_for(config: TrainConfig):
    def probe(candidate):
        return Probe(candidate, _peak(candidate.apply(config, None)), 0.01)

    return probe


@pytest.fixture
def made_up_probes(monkeypatch):
    """Probes from the made-up memory model, not measured (``budget.fit`` builds a ``Prober`` per budgeted job)."""
    from rece_bench.budget import fit

    monkeypatch.setattr(fit, "Prober", lambda config, *args, **kwargs: _probe_for(config))


class FakeTrainer:
    """Writes a result like ``train_run``; ``stop_at`` simulates a kill: an interrupted result, a checkpoint left."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[str, int, bool]] = []
        self.stop_at = stop_at

    def __call__(self, config, data_root, results_root, progress=None, resume=False, data=None):
        from rece_bench.data.loader import dataset_identity
        from rece_bench.training.session import run_id_of

        self.calls.append((config.loss, config.batch_size, resume))
        stopped = self.stop_at is not None and len(self.calls) == self.stop_at
        result = RunResult(
            run_id=run_id_of(config, dataset_identity(data_root, config.dataset)), dataset=config.dataset,
            loss=config.loss, params=config.hyperparameters(), seed=config.seed, device="cpu",
            status="interrupted" if stopped else "ok",
            metrics={} if stopped else {"ndcg@10": 0.01 * config.batch_size}, peak_bytes=_peak(config),
            train_time_s=1.0, epochs=1, budget_bytes=config.budget_bytes,
        )  # fmt: skip
        write_result(results_root, result)
        if stopped:
            last = checkpoint_dir(results_root, result.run_id) / LAST
            last.parent.mkdir(parents=True, exist_ok=True)
            last.write_bytes(b"checkpoint")
            raise KeyboardInterrupt
        return result


def _sweep(monkeypatch, trainer, *args):
    """``run_sweep`` with ``trainer`` in place of ``train.train_run``."""
    from rece_bench.training import driver as train

    monkeypatch.setattr(train, "train_run", trainer)
    return run_sweep(*args)


def _config(**overrides) -> SweepConfig:
    fields = dict(
        base=TrainConfig(dataset="tiny", epochs=1), losses=("ce", "rece"), budgets_bytes=(300 * MB, 100 * MB),
        seeds=(1235, 37),
    )  # fmt: skip
    fields.update(overrides)
    return SweepConfig(**fields)


def test_the_plan_is_losses_times_budgets_times_seeds():
    jobs = plan_jobs(_config())
    assert len(jobs) == 8
    assert [(j.loss, j.budget_bytes, j.seed) for j in jobs[:4]] == [
        ("ce", 100 * MB, 1235), ("ce", 100 * MB, 37), ("ce", 300 * MB, 1235), ("ce", 300 * MB, 37),
    ]  # fmt: skip


def test_without_budgets_every_grid_candidate_is_a_job():
    jobs = plan_jobs(_config(budgets_bytes=(), seeds=(1,), losses=("ce",)))
    assert [j.candidate.batch_size for j in jobs] == [256, 128, 64, 32, 16, 8, 4]


def test_the_schedule_makes_each_budget_wait_for_the_next_smaller_of_its_loss_and_seed():
    """The one plan both engines follow (sweep.once then finds a configuration two budgets chose, trained once)."""
    todo = [Job("ce", 1, 300 * MB), Job("rece", 1, 100 * MB), Job("ce", 2, 300 * MB), Job("ce", 1, 100 * MB),
            Job("ce", 1, 200 * MB), Job("rece", 1, 400 * MB)]  # fmt: skip
    plan = schedule(todo)
    order = [job for job, _ in plan]
    assert sorted(map(repr, order)) == sorted(map(repr, todo))  # the same jobs
    waits = {(j.loss, j.seed, j.budget_bytes): a and a.budget_bytes for j, a in plan}
    assert waits == {
        ("ce", 1, 100 * MB): None, ("ce", 1, 200 * MB): 100 * MB, ("ce", 1, 300 * MB): 200 * MB,
        ("ce", 2, 300 * MB): None, ("rece", 1, 100 * MB): None, ("rece", 1, 400 * MB): 100 * MB,
    }  # fmt: skip
    assert all(after is None or order.index(after) < order.index(job) for job, after in plan)
    assert [j.loss for j in order] == [j.loss for j in todo]  # each group keeps its places: rece is not moved up
    grid = plan_jobs(_config(budgets_bytes=(), seeds=(1,), losses=("ce",)))
    assert schedule(grid) == [(job, None) for job in grid]  # grid candidates are distinct: nothing waits


def test_a_finished_sweep_runs_nothing_the_second_time(tiny_data_root, tmp_path, made_up_probes, monkeypatch):
    trainer = FakeTrainer()
    first = _sweep(monkeypatch, trainer, _config(), tiny_data_root, tmp_path)
    assert (first.planned, first.skipped, len(first.results)) == (8, 0, 8)
    assert {r.status for r in first.results} == {"ok"}
    assert all(r.peak_bytes <= r.budget_bytes for r in first.results)
    second = _sweep(monkeypatch, trainer, _config(), tiny_data_root, tmp_path)
    assert (second.skipped, len(second.results)) == (8, 0) and len(trainer.calls) == 8


def test_a_sweep_killed_halfway_runs_only_what_is_missing(tiny_data_root, tmp_path, made_up_probes, monkeypatch):
    killed = FakeTrainer(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        _sweep(monkeypatch, killed, _config(), tiny_data_root, tmp_path)
    assert [r["status"] for r in read_results(tmp_path)].count("ok") == 2
    restarted = FakeTrainer()
    summary = _sweep(monkeypatch, restarted, _config(), tiny_data_root, tmp_path)
    assert (summary.skipped, len(summary.results)) == (2, 6)
    assert restarted.calls[0] == (killed.calls[2][0], killed.calls[2][1], True)  # the killed job resumes
    assert not any(resume for _, _, resume in restarted.calls[1:])
    assert len(read_results(tmp_path)) == 8 and {r["status"] for r in read_results(tmp_path)} == {"ok"}


def test_more_budgets_later_run_only_the_new_ones(tiny_data_root, tmp_path, made_up_probes, monkeypatch):
    trainer = FakeTrainer()
    _sweep(monkeypatch, trainer, _config(budgets_bytes=(100 * MB,)), tiny_data_root, tmp_path)
    summary = _sweep(monkeypatch, trainer, _config(), tiny_data_root, tmp_path)
    assert (summary.skipped, len(summary.results)) == (4, 4)
    assert {r.budget_bytes for r in summary.results} == {300 * MB}


def test_a_budget_nothing_fits_is_recorded_once_as_over_budget(tiny_data_root, tmp_path, made_up_probes, monkeypatch):
    config = _config(budgets_bytes=(1 * MB,), losses=("rece",), seeds=(1,))
    trainer = FakeTrainer()
    summary = _sweep(monkeypatch, trainer, config, tiny_data_root, tmp_path)
    [result] = summary.results
    assert result.status == "over_budget" and "nothing fits" in result.message and not trainer.calls
    again = _sweep(monkeypatch, trainer, config, tiny_data_root, tmp_path)
    assert again.skipped == 1 and not again.results


def test_bad_sweeps_are_refused():
    with pytest.raises(UserError, match="no budget grid for loss 'nosuch'"):
        _config(losses=("nosuch",))
    with pytest.raises(UserError, match="at least one loss"):
        _config(losses=())


def test_cli_sweep_runs_then_skips(tiny_data_root, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text("[ce]\nbatch_size = 64\ncuts = [{batch_size = [16]}]\n")
    results = str(tmp_path / "results")
    args = ["sweep", "--dataset", "tiny", "--loss", "ce", "--budget", "1GB", "--grid", str(grid), "--epochs", "1",
            "--max-len", "12", "--data-dir", str(tiny_data_root), "--results-dir", results]  # fmt: skip
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "1 runs planned, 0 already done, 1 run now" in first.output
    second = runner.invoke(app, args, terminal_width=200)
    assert "1 runs planned, 1 already done, 0 run now" in second.output
    [row] = read_results(tmp_path / "results")
    assert row["params"]["batch_size"] == 64 and row["budget_bytes"] == 10**9
    bad = runner.invoke(app, [*args[:-2], "--seeds", "4"], terminal_width=200)
    assert bad.exit_code == 2 and "--seeds 4" in bad.output
