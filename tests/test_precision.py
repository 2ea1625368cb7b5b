"""--precision: a run trains in it, records it and the report shows it; it is part of a run's identity (run id,
resume, the sweep's restart rule); a bad value is one line with exit code 2 on every command that takes it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from rece_bench.cli import app
from rece_bench.errors import UserError

runner = CliRunner()
TINY_RUN = ["--epochs", "2", "--batch-size", "32", "--max-len", "12", "--dim", "16"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *needles) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_run_in_bf16_records_its_precision_and_the_report_shows_it(tmp_path, tiny_data_root):
    results = tmp_path / "results"
    common = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results]
    assert _invoke(*common, "--precision", "bf16").exit_code == 0
    assert _invoke(*common).exit_code == 0  # fp32: another run, not the bf16 one again
    saved = {json.loads(p.read_text())["precision"]: json.loads(p.read_text()) for p in (results / "runs").glob("*")}
    assert set(saved) == {"bf16", "fp32"}
    assert saved["bf16"]["status"] == "ok" and saved["bf16"]["params"]["precision"] == "bf16"
    assert "precision" not in saved["fp32"]["params"]  # fp32 runs keep the ids they had before precisions
    assert saved["bf16"]["run_id"] != saved["fp32"]["run_id"]
    report = _invoke("report", "--format", "json", "--results-dir", results)
    assert sorted(row["precision"] for row in json.loads(report.stdout)) == ["bf16", "fp32"]
    markdown = _invoke("report", "--format", "markdown", "--results-dir", results).stdout
    header = next(line for line in markdown.splitlines() if line.startswith("| loss | NDCG@1"))
    assert "| precision |" in header
    table2_rows = [line for line in markdown.splitlines() if line.startswith("| ce |")]
    assert table2_rows and all("bf16" in row or "fp32" in row for row in table2_rows)
    csv = _invoke("report", "--format", "csv", "--results-dir", results).stdout
    assert "precision" in csv.splitlines()[0].split(",")


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--dataset", "tiny"],
        ["sweep", "--dataset", "tiny", "--loss", "ce"],
        ["demo"],
        ["bench-step", "--dataset", "tiny"],
        ["bench-loss", "--items", "100", "--positions", "64", "--loss", "ce"],
    ],
    ids=lambda command: command[0],
)
def test_a_bad_precision_is_one_line_with_exit_2(command, tmp_path, tiny_data_root):
    where = ["--results-dir", tmp_path / "results"] + (
        ["--data-dir", tiny_data_root] if command[0] != "bench-loss" else []
    )
    _one_line_error(_invoke(*command, "--precision", "fp8", *where), "fp8", "fp32, bf16, fp16")
    assert not (tmp_path / "results" / "runs").exists()


def test_precision_is_validated_at_construction_and_is_part_of_the_identity(tiny_config):
    from rece_bench.training.session import run_id_of

    with pytest.raises(UserError, match="fp32, bf16, fp16"):
        tiny_config(precision="half")
    fp32, bf16 = tiny_config(), tiny_config(precision="bf16")
    assert "precision" not in fp32.hyperparameters() and bf16.hyperparameters()["precision"] == "bf16"
    assert run_id_of(fp32) != run_id_of(bf16) != run_id_of(tiny_config(precision="fp16"))


def test_an_old_result_without_precision_reads_as_fp32(tmp_path):
    from rece_bench.results import read_result

    old = {"run_id": "x", "dataset": "d", "loss": "ce", "params": {"batch_size": 8}, "seed": 1, "device": "cpu",
           "status": "ok"}  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert read_result(path).precision == "fp32"


def test_the_sweeps_restart_rule_tells_fp32_and_bf16_runs_apart(tiny_config):
    from rece_bench.sweep.grid import Job, SweepConfig, finished, job_identity

    fp32 = SweepConfig(base=tiny_config(), losses=("ce",), budgets_bytes=(10**9,))
    bf16 = dataclasses.replace(fp32, base=tiny_config(precision="bf16"))
    job = Job("ce", 7, 10**9)
    done_fp32 = {"dataset": "tiny", "loss": "ce", "seed": 7, "budget_bytes": 10**9, "status": "ok",
                 "params": job.config(fp32.base).hyperparameters()}  # fmt: skip
    assert job_identity(job, fp32) in finished([done_fp32], fp32)
    assert job_identity(job, bf16) not in finished([done_fp32], bf16)


def test_fp16_trains_with_a_gradient_scaler_that_the_checkpoint_keeps(tiny_data_root, tiny_config, tmp_path):
    from rece_bench.data.loader import iterate_batches
    from rece_bench.training.driver import load_run_data, prepare_run, train_step

    config = tiny_config(precision="fp16", epochs=1)
    data = load_run_data(tiny_data_root, config.dataset, config.max_len)
    run = prepare_run(config, None, tmp_path, resume=False, data=data)
    assert run.scaler is not None and run.compute.precision.name == "fp16"
    batch = next(iter(iterate_batches(data.train, 32, run.generator)))
    before = run.model.item_embeddings().detach().clone()
    value = train_step(run.model, run.loss_fn, run.optimizer, batch, run.compute, run.scaler)
    assert value > 0 and run.scaler.get_scale() > 0
    assert not torch.equal(before, run.model.item_embeddings().detach())  # the scaled step was taken
    run.checkpoint()
    again = prepare_run(config, None, tmp_path, resume=True, data=data)
    assert again.scaler.get_scale() == run.scaler.get_scale()


def test_evaluation_scores_in_float32_under_a_bf16_forward(tiny_data_root, tiny_config, monkeypatch):
    """The model runs under autocast as in training; the target's score and the others' are compared in float32."""
    from rece_bench.device import compute_for
    from rece_bench.training import evaluate
    from rece_bench.training.driver import load_run_data
    from rece_bench.training.session import build_run

    config = tiny_config(precision="bf16")
    data = load_run_data(tiny_data_root, config.dataset, config.max_len)
    run = build_run(config, data)
    seen = []
    real = evaluate.rank_targets

    def spy(queries, items, *args):
        seen.append((queries.dtype, items.dtype, torch.is_autocast_enabled("cpu")))
        return real(queries, items, *args)

    monkeypatch.setattr(evaluate, "rank_targets", spy)
    metrics = evaluate.evaluate_model(run.model, data.valid, compute_for("cpu", "bf16"))
    assert seen == [(torch.float32, torch.float32, False)]
    assert 0.0 <= metrics["ndcg@10"] <= 1.0
