"""BCE+: binary cross-entropy with K negatives per position, uniform without replacement, none of them an item
of the user's training sequence (REFERENCE section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    accumulator_bytes,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.cards import Ladder, LossCard, register_card
from rece_bench.losses.sampling import sample_excluding, scored_with_positive

N_NEGATIVES = ParamSpec("n_negatives", "int", 256, "Negatives per position.")
# The budget ladder of the sampled losses (BCE+, CE-, gBCE): batch 256 and 1,024 negatives; the batch is cut to 64
# first, then the negatives (more negatives bring a sampled loss closer to full CE: gSASRec, Klenitskiy & Vasilev),
# then the batch again. The values come from the paper's grids (REFERENCE section 2).
SAMPLED_START = {"batch_size": 256, "n_negatives": 1024}
SAMPLED_CUTS = (("batch_size", (128, 64)), ("n_negatives", (256, 64, 16, 4, 1)), ("batch_size", (32, 16, 8, 4)))
GENERATOR = ParamSpec("generator", "Generator | None", None, "Random generator for the negatives (seeding).")


def binary_ce(positive_nll: torch.Tensor, negative_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the 1+K columns of each position, then over positions; positive_nll (N,), logits (N, K)."""
    negative_nll = F.softplus(negative_logits).sum(dim=1)  # -log(1 - sigmoid(s)) summed over K -> (N,)
    return ((positive_nll + negative_nll) / (1 + negative_logits.shape[1])).mean()


def sampled_work_bytes(loss: Loss, n_positions: int, dim: int, elem_bytes: int) -> int:
    """BCE+, CE-, gBCE: ids and about four (N, K) tensors of float32-or-wider logits, the gathered rows of a
    block, and the float32 gradient buffers of reduced precision."""
    logits = n_positions * loss.n_negatives * (8 + 4 * max(elem_bytes, 4))
    return logits + (96 << 20) + accumulator_bytes(n_positions, loss.num_items, dim, elem_bytes)


SAMPLED_LADDER = Ladder(SAMPLED_START, SAMPLED_CUTS)
SAMPLED_ABBREVIATIONS = {"n_negatives": "k"}  # the knob's letter in the paper


class ExcludingSampledLoss(Loss):
    """Shared by BCE+ and CE-: K negatives drawn without replacement among the items a user has not seen."""

    params = (N_NEGATIVES, GENERATOR)
    needs_batch = True

    def __init__(self, num_items: int, n_negatives: int = 256, generator: torch.Generator | None = None) -> None:
        super().__init__(num_items)
        self.n_negatives = check_int("n_negatives", n_negatives, minimum=1, maximum=num_items)
        self.generator = check_generator(generator)


@register
class BCEPlus(ExcludingSampledLoss):
    name = "bce"
    description = "BCE+: binary CE, K negatives per position without replacement, excluding the user's items."

    def sample_negatives(self, targets: torch.Tensor, batch: LossBatch) -> torch.Tensor:
        """(N, K) ids, distinct per position, none seen by the position's user."""
        return sample_excluding(batch.seen_items, batch.seq_index, self.n_negatives, self.num_items, self.generator)

    def loss_from_negatives(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """The loss on given negatives (N, K), for tests and for callers with their own sampler."""
        logits = scored_with_positive(hidden, item_emb, targets, negatives)  # (N, 1 + K), the positive first
        positive_nll = F.softplus(-logits[:, 0])  # -log sigmoid(s_pos), (N,)
        return binary_ce(positive_nll, logits[:, 1:])

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        assert batch is not None
        return self.loss_from_negatives(hidden, item_emb, targets, self.sample_negatives(targets, batch))

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        return sampled_work_bytes(self, n_positions, dim, elem_bytes)


register_card(
    LossCard(
        name="bce",
        label="BCE+",
        abbreviations=SAMPLED_ABBREVIATIONS,
        ladder=SAMPLED_LADDER,
        report_rank=10,
        paper_presets={
            "beeradvocate": {"batch_size": 8, "loss_params": {"n_negatives": 64}},
            "behance": {"batch_size": 32, "loss_params": {"n_negatives": 1024}},
            "gowalla": {"batch_size": 128, "loss_params": {"n_negatives": 256}},
            "kindle": {"batch_size": 64, "loss_params": {"n_negatives": 1024}},
        },
        paper_results={
            "kindle": (0.0473, 0.0674, 0.0725, 0.0856, 0.1010),
            "gowalla": (0.0175, 0.0341, 0.0415, 0.0507, 0.0739),
        },
    )
)
