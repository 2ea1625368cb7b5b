"""Full softmax cross-entropy: every item scored for every position (the memory baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rece_bench.losses.base import Loss, LossBatch, register


@register
class CrossEntropy(Loss):
    name = "ce"
    description = "Full softmax cross-entropy over the whole catalogue; materialises the (N, C) logits."

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        logits = hidden @ item_emb.T  # (N, D) x (D, C) -> (N, C)
        return F.cross_entropy(logits, targets)

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        # the logits, their softmax saved for backward, and the gradient of the logits
        return 3 * n_positions * self.num_items * elem_bytes
