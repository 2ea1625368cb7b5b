"""Adding a loss is one file: a loss defined and registered here, in a test, with its card beside it, appears in
every place that lists, budgets, presets or reports losses, with no edit anywhere else."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from rece_bench.budget.ladder import ladder_for
from rece_bench.cli import app
from rece_bench.losses.base import LOSSES, Loss, ParamSpec, check_int, register
from rece_bench.losses.cards import CARDS, Ladder, LossCard, register_card


@pytest.fixture
def throwaway_loss():
    """A toy loss: CE over the positive and the first ``width`` items, registered with its card for the test only."""

    class FirstItems(Loss):
        name = "first_items"
        description = "Toy: softmax over the positive and the first `width` items."
        params = (ParamSpec("width", "int", 8, "Items scored."),)

        def __init__(self, num_items: int, width: int = 8) -> None:
            super().__init__(num_items)
            self.width = check_int("width", width, minimum=1, maximum=num_items)

        def compute(self, hidden, item_emb, targets, batch):
            logits = hidden @ item_emb[: self.width].T  # (N, D) x (D, w) -> (N, w)
            positive = (hidden * item_emb[targets]).sum(-1, keepdim=True)  # (N, 1)
            return torch.nn.functional.cross_entropy(torch.cat([positive, logits], 1), torch.zeros_like(targets))

    register(FirstItems)
    register_card(
        LossCard(
            name="first_items",
            label="First items",
            abbreviations={"width": "w"},
            ladder=Ladder({"batch_size": 64, "width": 32}, (("width", (16, 8)), ("batch_size", (32,)))),
            report_rank=15,  # between bce (10) and gbce (20)
            paper_presets={"gowalla": {"batch_size": 16, "loss_params": {"width": 4}, "dropout": 0.1}},
            paper_results={"gowalla": (0.1, 0.2, 0.3, 0.4, 0.5)},
        )
    )
    yield FirstItems
    del LOSSES["first_items"], CARDS["first_items"]


def test_a_registered_loss_is_listed_by_the_cli(throwaway_loss):
    result = CliRunner().invoke(app, ["losses"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "first_items" in result.output and "width" in result.output
    assert "(First items)" in result.output  # its card's label


def test_a_registered_loss_brings_its_budget_ladder(throwaway_loss):
    labels = [c.label() for c in ladder_for("first_items").candidates()]
    assert labels == ["batch 64, w 32", "batch 64, w 16", "batch 64, w 8", "batch 32, w 8"]


def test_a_registered_loss_brings_its_paper_preset(throwaway_loss):
    from rece_bench.presets import PAPER_MODEL, paper_preset

    fields = paper_preset("gowalla", "first_items")
    assert fields == {**PAPER_MODEL, "dropout": 0.1, "batch_size": 16, "loss_params": {"width": 4}}


def test_a_registered_loss_takes_its_row_and_the_papers_numbers_in_the_report(throwaway_loss):
    from rece_bench.report.tables import report_sections, results_frame

    def row(loss, params, ndcg):
        return {
            "run_id": loss, "dataset": "gowalla", "loss": loss, "status": "ok", "params": params, "seed": 1,
            "budget_bytes": None, "peak_bytes": 10**6, "train_time_s": 1.0, "ndcg@1": ndcg, "ndcg@5": ndcg,
            "ndcg@10": ndcg, "hr@5": ndcg, "hr@10": ndcg, "valid_ndcg@10": ndcg,
        }  # fmt: skip

    rows = [
        row("gbce", {"batch_size": 64, "loss.n_negatives": 4}, 0.2),
        row("first_items", {"batch_size": 64, "loss.width": 32}, 0.3),
        row("bce", {"batch_size": 64, "loss.n_negatives": 4}, 0.1),
    ]
    table2 = report_sections(results_frame(rows))[0]
    assert [r[0].text for r in table2.rows] == ["bce", "first_items", "gbce"]  # by report_rank
    first = table2.rows[1]
    assert first[3].paper == "0.3000" and first[3].mark == "best"  # NDCG@10 beside the paper's
    assert first[-2].text == "batch 64, w 32"  # its abbreviations
