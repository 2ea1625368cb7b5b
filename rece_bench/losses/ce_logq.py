"""Sampled softmax with the logQ correction (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus
Item Recommendations", RecSys 2019, DOI 10.1145/3298689.3346996).

K negatives are shared by every position of the batch. Each position's softmax runs over its positive and the K
columns; a column whose item is the position's own target is removed (-inf), so the positive is never its own
negative. Every sampled logit is corrected by the log of how often its item is expected among the columns:

    s_tj - log(K q_j),    q_j = w_j / sum_i w_i,    w_j = max(c_j, 1/2),

with c_j the item's interactions in the training split (``item_counts``, given at construction). An item with no
interaction is weighted as half of one: it can still be drawn (so every item is in the estimate of the partition
function) and its correction stays finite. K q_j is exactly the expected count of j among K draws with replacement
from q (``sampler="popularity"``). With ``sampler="in_batch"`` the columns are the targets of K positions of the
batch, chosen uniformly without replacement (all N when K >= N); each such column is item j with probability the
share of j among the batch's targets, which Yi et al. approximate by the item's frequency in the training stream:
q_j as above, so the same correction applies. This is an approximation: a batch's targets are not independent draws
(a user's sequence repeats its tastes), and the batch's own target shares differ from q.

The positive. Yi et al. correct every in-batch item, the positive included: ``correct_positive=True`` subtracts
log(K q_y) from the positive's logit too, and then the K in the correction cancels (a shift common to all columns).
Khrylchenko et al. ("Correcting the LogQ Correction", RecSys 2025, arXiv 2507.09331) point out that the positive is
in the softmax with probability 1, not Monte-Carlo sampled, so it should not be corrected: ``correct_positive=False``
(the default) keeps s_ty as it is. Then exp(s_ty) + sum_k exp(s_tjk) / (K q_jk) is an unbiased estimate
of the full partition function (the draws equal to y that are removed are exactly y's share), and the loss tends to
full CE as K grows (consistent, biased at finite K by Jensen's inequality); with the default, the positive weighs
1 / (K q_y) times what full CE gives it. The default is the uncorrected positive: with the positive's own column
removed from the negatives, only it makes the expected gradient tend to full CE's (measured in the tests: the mean
gradient's error falls like 1/K with it and stays at 0.17 with Yi et al.'s variant, on the same toy case), and a
benchmark of memory-light CE stand-ins is about approaching full CE. Khrylchenko et al.'s refined loss (which also
adds a per-sample weight) is not implemented here.

Building needs ``item_counts``; the budget checks a candidate's parameters with stand-in inputs
(``base.placeholder_data_inputs``).

Memory: the (N, K) logits are made by a custom autograd function a block of positions at a time and recomputed in
the backward pass; the negatives' gradient is gathered in a (K, D) buffer and added to one (C, D) gradient, with the
positive's, so beyond the inputs and their gradients the peak is about one block (``block_mib``) whatever K.

Shape letters: the common ones (K: the negatives shared by the batch) and R as in ``docs/notation.md``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rece_bench.errors import UserError
from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    accumulator_bytes,
    block_bytes,
    block_mib_param,
    check_block_mib,
    check_bool,
    check_choice,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.cards import Ladder, LossCard, register_card
from rece_bench.losses.precision import (
    accumulate_dtype,
    accumulate_size,
    add_matmul_,
    amp_backward,
    amp_forward,
    logit_bytes,
    matmul_acc,
)
from rece_bench.losses.sampling import add_positive_grad, positive_logits

SAMPLERS = ("popularity", "in_batch")
ZERO_COUNT_WEIGHT = 0.5  # an item with no training interaction is drawn as if it had half of one


def popularity_weights(item_counts: Any, num_items: int) -> torch.Tensor:
    """(C,) float64 sampling weights max(c_j, 1/2) from the training counts, checked: length C, finite, >= 0,
    and a positive total."""
    counts = torch.as_tensor(item_counts)
    if counts.dim() != 1 or counts.shape[0] != num_items:
        raise UserError(
            f"item_counts must be a (C,) tensor with C={num_items} (interactions per item in the training split), "
            f"got shape {tuple(counts.shape)}"
        )
    counts = counts.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(counts).all()) or float(counts.min()) < 0:
        raise UserError("item_counts must be finite and >= 0 (interactions per item in the training split)")
    if float(counts.sum()) <= 0:
        raise UserError("item_counts sums to 0: pass the training split's interactions per item")
    return counts.clamp(min=ZERO_COUNT_WEIGHT)


def draw_popular(
    cumulative: torch.Tensor, k: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(K,) ids drawn with replacement, P(j) = w_j / sum(w), by inverting the cumulative weights (C,) float64."""
    total = cumulative[-1]
    u = torch.rand(k, generator=generator, device=device, dtype=torch.float64).mul_(total)  # (K,) in [0, total)
    return torch.searchsorted(cumulative, u, right=True).clamp_(max=cumulative.shape[0] - 1)


def draw_in_batch(targets: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """(min(K, N),) the targets of K positions chosen uniformly without replacement (all of them when K >= N)."""
    if k >= targets.shape[0]:
        return targets
    positions = torch.randperm(targets.shape[0], generator=generator, device=targets.device)[:k]  # (K,)
    return targets[positions]


def _block_logits(
    hidden: torch.Tensor, rows: torch.Tensor, shift: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """(R, K) corrected logits of R positions against the K columns, each position's own target -inf; the product
    in the inputs' dtype, the logits in its accumulate dtype (``shift`` is in it)."""
    logits = matmul_acc(hidden, rows.T).sub_(shift)  # (R, D) x (D, K) -> (R, K), minus log(K q_j)
    return logits.masked_fill_(targets.unsqueeze(1) == negatives.unsqueeze(0), -torch.inf)  # (R, 1) == (1, K)


class _SharedNegativesCE(torch.autograd.Function):
    """Per position: log(exp(s_y - b_y) + sum_k exp(s_jk - a_k)) - (s_y - b_y), with a (K,) the negatives'
    corrections and b (N,) the positive's; one block of R positions at a time, recomputed in the backward pass.
    Logits, log-partitions and gradient buffers in the accumulate dtype (float32 for bf16 and fp16)."""

    @staticmethod
    @amp_forward
    def forward(ctx, hidden, item_emb, targets, negatives, neg_shift, pos_shift, block: int):  # noqa: ANN001
        positive = positive_logits(hidden, item_emb, targets, accumulate=True).sub_(pos_shift)  # (N,)
        rows = item_emb.index_select(0, negatives)  # (K, D)
        log_partition = torch.empty_like(positive)  # (N,)
        for start in range(0, hidden.shape[0], block):
            part = slice(start, start + block)
            logits = _block_logits(hidden[part], rows, neg_shift, targets[part], negatives)
            log_partition[part] = torch.logsumexp(logits, dim=1)  # (R,); -inf when every column is removed
            del logits  # freed before the next block's
        torch.logaddexp(log_partition, positive, out=log_partition)
        ctx.save_for_backward(hidden, item_emb, targets, negatives, neg_shift, positive, log_partition)
        ctx.block = block
        return log_partition - positive

    @staticmethod
    @amp_backward
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, negatives, neg_shift, positive, log_partition = ctx.saved_tensors
        acc = positive.dtype
        grad_loss = grad_loss.to(acc)
        rows = item_emb.index_select(0, negatives)  # (K, D)
        grad_hidden = torch.empty(hidden.shape, dtype=acc, device=hidden.device)
        grad_rows = torch.zeros(rows.shape, dtype=acc, device=rows.device)
        for start in range(0, hidden.shape[0], ctx.block):
            part = slice(start, start + ctx.block)
            probs = _block_logits(hidden[part], rows, neg_shift, targets[part], negatives)  # (R, K)
            probs.sub_(log_partition[part].unsqueeze(1)).exp_().mul_(grad_loss[part].unsqueeze(1))  # softmax x grad
            probs = probs.to(hidden.dtype)  # the products' operand (no copy in full precision)
            if probs.dtype == acc:
                torch.mm(probs, rows, out=grad_hidden[part])  # (R, K) x (K, D) -> (R, D)
            else:
                grad_hidden[part] = torch.mm(probs, rows)  # cast up on the copy
            add_matmul_(grad_rows, probs.T, hidden[part])  # (K, R) x (R, D) -> (K, D)
            del probs
        grad_items = torch.zeros(item_emb.shape, dtype=acc, device=item_emb.device)
        grad_items.index_add_(0, negatives, grad_rows)  # (K, D) rows at their ids
        coef = (positive - log_partition).exp_().sub_(1).mul_(grad_loss)  # d loss / d s_y = softmax_y - 1
        add_positive_grad(grad_hidden, grad_items, hidden, item_emb, targets, coef)
        return grad_hidden.to(hidden.dtype), grad_items.to(item_emb.dtype), None, None, None, None, None


@register
class LogQCrossEntropy(Loss):
    name = "ce_logq"
    description = "Sampled softmax, K negatives shared per batch (popularity or in-batch), logQ-corrected."
    params = (
        ParamSpec("n_negatives", "int", 1024, "K negatives shared by the batch's positions."),
        ParamSpec("sampler", "str", "popularity", "'popularity' (with replacement) or 'in_batch' (the targets)."),
        ParamSpec("correct_positive", "bool", False, "Subtract log(K q_y) from the positive too (Yi et al.)."),
        block_mib_param("one block of the (N, K) logits"),
        ParamSpec("generator", "Generator | None", None, "Random generator for the negatives (seeding)."),
    )
    data_inputs = ("item_counts",)

    def __init__(
        self,
        num_items: int,
        item_counts: Any = None,
        n_negatives: int = 1024,
        sampler: str = "popularity",
        correct_positive: bool = False,
        block_mib: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items)
        self.n_negatives = check_int("n_negatives", n_negatives, minimum=1)
        self.sampler = check_choice("sampler", sampler, SAMPLERS)
        self.correct_positive = check_bool("correct_positive", correct_positive)
        self.block_mib = check_block_mib(block_mib)
        self.generator = check_generator(generator)
        if item_counts is None:
            raise UserError(
                "ce_logq needs item_counts: pass item_counts=(C,) interactions per item of the training split "
                "(the trainer does so from the prepared data)"
            )
        # Buffers follow .to(device); not persistent: they are data, rebuilt from the counts, not learned state.
        weights = popularity_weights(item_counts, num_items)  # (C,) float64
        device = torch.as_tensor(item_counts).device
        self.register_buffer("log_q", (weights.log() - math.log(float(weights.sum()))).to(device), persistent=False)
        self.register_buffer("cumulative", weights.cumsum(0).to(device), persistent=False)

    def sample_negatives(self, targets: torch.Tensor) -> torch.Tensor:
        """(K,) ids shared by the batch: popularity draws, or the targets of K of its positions."""
        if self.sampler == "in_batch":
            return draw_in_batch(targets, self.n_negatives, self.generator)
        return draw_popular(self.cumulative, self.n_negatives, self.generator, targets.device)

    def loss_from_negatives(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """The loss on given shared negatives (K,), for tests and for callers with their own sampler."""
        log_k = math.log(negatives.shape[0])
        acc = accumulate_dtype(hidden.dtype)  # the corrections join the logits there
        neg_shift = self.log_q[negatives].to(acc).add_(log_k)  # (K,): log(K q_j)
        if self.correct_positive:
            pos_shift = self.log_q[targets].to(acc).add_(log_k)  # (N,)
        else:
            pos_shift = torch.zeros(hidden.shape[0], dtype=acc, device=hidden.device)
        per_row = negatives.shape[0] * (logit_bytes(hidden.dtype) + accumulate_size(hidden.dtype) + 1)
        block = max(1, block_bytes(self.block_mib, hidden.device) // per_row)
        per_position = _SharedNegativesCE.apply(hidden, item_emb, targets, negatives, neg_shift, pos_shift, block)
        return per_position.mean()

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        return self.loss_from_negatives(hidden, item_emb, targets, self.sample_negatives(targets))

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        k = min(self.n_negatives, n_positions) if self.sampler == "in_batch" else self.n_negatives
        block = min(block_bytes(self.block_mib), n_positions * k * (2 * elem_bytes + 1))  # logits, exp, mask
        rows = 3 * k * dim * elem_bytes + 3 * n_positions * dim * elem_bytes  # gathered rows and their grads
        accumulators = accumulator_bytes(n_positions, self.num_items, dim, elem_bytes)
        return block + rows + 8 * self.num_items * 2 + 8 * (n_positions + k) * 4 + accumulators  # log q, cumulative


register_card(
    LossCard(
        name="ce_logq",
        label="CE-logQ",
        abbreviations={"n_negatives": "k", "correct_positive": "corr_pos"},
        # Batch 256 and 4,096 negatives (the largest of the paper's grid: the corrected estimate's bias falls like 1/K),
        # the batch cut to 64 first as in the other sampled losses, then the negatives, then the batch again. With the
        # logits streamed, K costs time and a (K, D) block of rows more than peak memory; the batch is the real lever.
        ladder=Ladder(
            {"batch_size": 256, "n_negatives": 4096},
            (("batch_size", (128, 64)), ("n_negatives", (1024, 256, 64)), ("batch_size", (32, 16, 8, 4))),
        ),
        report_rank=35,
    )
)
