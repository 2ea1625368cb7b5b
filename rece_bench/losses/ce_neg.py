"""CE- (sampled softmax, Klenitskiy & Vasilev): K negatives per user sequence, uniform without replacement,
excluding the user's items, shared by every position of the sequence; no logQ correction."""

from __future__ import annotations

import torch

from rece_bench.losses.base import LossBatch, ParamSpec, register
from rece_bench.losses.bce import (
    GENERATOR,
    SAMPLED_ABBREVIATIONS,
    SAMPLED_LADDER,
    ExcludingSampledLoss,
    sampled_work_bytes,
)
from rece_bench.losses.cards import LossCard, register_card
from rece_bench.losses.sampling import sample_excluding, scored_with_positive


@register
class SampledCrossEntropy(ExcludingSampledLoss):
    name = "ce_neg"
    description = "CE-: softmax over the positive and K negatives shared per sequence, excluding user items."
    params = (ParamSpec("n_negatives", "int", 256, "Negatives per sequence, shared by its positions."), GENERATOR)

    def sample_negatives(self, batch: LossBatch) -> torch.Tensor:
        """(B, K) ids, one distinct set per sequence, none seen by the sequence's user."""
        seqs = torch.arange(batch.seen_items.shape[0], device=batch.seen_items.device)  # (B,)
        return sample_excluding(batch.seen_items, seqs, self.n_negatives, self.num_items, self.generator)

    def loss_from_negatives(
        self,
        hidden: torch.Tensor,
        item_emb: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor,
        seq_index: torch.Tensor,
    ) -> torch.Tensor:
        """The loss on given per-sequence negatives (B, K); seq_index (N,) picks each position's set."""
        logits = scored_with_positive(hidden, item_emb, targets, negatives[seq_index])  # (B, K) -> (N, 1 + K)
        return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        assert batch is not None
        negatives = self.sample_negatives(batch)
        return self.loss_from_negatives(hidden, item_emb, targets, negatives, batch.seq_index)

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        return sampled_work_bytes(self, n_positions, dim, elem_bytes)


register_card(
    LossCard(
        name="ce_neg",
        label="CE-",
        abbreviations=SAMPLED_ABBREVIATIONS,
        ladder=SAMPLED_LADDER,
        report_rank=30,
        paper_presets={
            "beeradvocate": {"batch_size": 8, "loss_params": {"n_negatives": 4096}},
            "behance": {"batch_size": 64, "loss_params": {"n_negatives": 1024}},
            "gowalla": {"batch_size": 64, "loss_params": {"n_negatives": 1024}},
            "kindle": {"batch_size": 64, "loss_params": {"n_negatives": 1024}},
        },
        paper_results={
            "kindle": (0.0397, 0.0582, 0.0644, 0.0744, 0.0938),
            "gowalla": (0.0162, 0.0321, 0.0402, 0.0475, 0.0729),
        },
    )
)
