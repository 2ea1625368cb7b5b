"""gBCE (gSASRec): K negatives per position uniform with replacement, no exclusion, and the positive's
probability raised to the power beta, computed in log space (REFERENCE section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    check_float,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.bce import GENERATOR, N_NEGATIVES, binary_ce
from rece_bench.losses.sampling import sample_uniform, scored_with_positive


@register
class GeneralisedBCE(Loss):
    name = "gbce"
    description = "gBCE: K negatives per position with replacement, positive term -beta*log(sigmoid(s))."
    params = (
        N_NEGATIVES,
        ParamSpec("t", "float", 0.75, "Calibration in [0, 1]; t=0 gives beta=1 (plain BCE)."),
        GENERATOR,
    )

    def __init__(
        self,
        num_items: int,
        n_negatives: int = 256,
        t: float = 0.75,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items)
        check_int("num_items", num_items, minimum=2)  # alpha = K / (C - 1)
        self.n_negatives = check_int("n_negatives", n_negatives, minimum=1)
        self.t = check_float("t", t, 0.0, 1.0)
        self.generator = check_generator(generator)

    @property
    def beta(self) -> float:
        alpha = self.n_negatives / (self.num_items - 1)
        return alpha * (self.t * (1 - 1 / alpha) + 1 / alpha)

    def sample_negatives(self, targets: torch.Tensor, batch: LossBatch | None = None) -> torch.Tensor:
        """(N, K) ids drawn uniformly with replacement over the catalogue."""
        return sample_uniform(targets.shape[0], self.n_negatives, self.num_items, targets.device, self.generator)

    def loss_from_negatives(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """The loss on given negatives (N, K); -beta*log(sigmoid(s)) = beta*softplus(-s) never overflows."""
        logits = scored_with_positive(hidden, item_emb, targets, negatives)  # (N, 1 + K), the positive first
        positive_nll = self.beta * F.softplus(-logits[:, 0])  # (N,)
        return binary_ce(positive_nll, logits[:, 1:])

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        return self.loss_from_negatives(hidden, item_emb, targets, self.sample_negatives(targets))

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        return n_positions * self.n_negatives * (8 + 4 * elem_bytes) + (96 << 20)
