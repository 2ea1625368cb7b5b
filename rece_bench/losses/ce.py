"""Full softmax cross-entropy: every item scored for every position (the memory baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rece_bench.losses.base import Loss, LossBatch, register
from rece_bench.losses.cards import Ladder, LossCard, register_card
from rece_bench.losses.precision import accumulate_dtype

# The budget ladder of the full-softmax losses: batch size only, 256 down to 4.
FULL_LADDER = Ladder({"batch_size": 256}, (("batch_size", (128, 64, 32, 16, 8, 4)),))


@register
class CrossEntropy(Loss):
    name = "ce"
    description = "Full softmax cross-entropy over the whole catalogue; materialises the (N, C) logits."

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        logits = hidden @ item_emb.T  # (N, D) x (D, C) -> (N, C)
        if logits.dtype == accumulate_dtype(logits.dtype):
            return F.cross_entropy(logits, targets)
        # In bf16 or fp16 the (N, C) logits and their softmax stay in that dtype (the memory this baseline stands
        # for; torch's softmax kernels accumulate in float32 inside); the mean over positions is taken in float32,
        # not rounded to bf16 as the fused mean's result would be.
        return F.cross_entropy(logits, targets, reduction="none").float().mean()

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        # the logits, their softmax saved for backward, and the gradient of the logits
        return 3 * n_positions * self.num_items * elem_bytes


CE_CARD = register_card(
    LossCard(
        name="ce",
        label="CE",
        ladder=FULL_LADDER,
        report_rank=40,
        paper_presets={
            "beeradvocate": {"batch_size": 8, "loss_params": {}},
            "behance": {"batch_size": 64, "loss_params": {}},
            "gowalla": {"batch_size": 32, "loss_params": {}},
            "kindle": {"batch_size": 64, "loss_params": {}},
        },
        paper_results={
            "kindle": (0.0467, 0.0658, 0.0711, 0.0822, 0.0972),
            "gowalla": (0.0164, 0.0324, 0.0388, 0.0471, 0.0674),
        },
    )
)
