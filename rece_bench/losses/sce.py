"""SCE (Scalable Cross-Entropy; Mezentsev, Gusak, Oseledets, Frolov, RecSys 2024, arXiv 2409.18721) with the
authors' arithmetic (shared/reference/SCE.md section 1, the authors' ``SASRec.sce_forward``).

Per call, n_b random directions are drawn. Bucket b takes the b_x positions and the b_y items whose projections
on direction b are largest (top-k along the positions and along the items, not an argmax: a row may sit in
several buckets or in none). Every selected position is scored against its bucket's items, its own positive
removed from them (-inf) and appended as the last column; its CE is taken per (bucket, position). A position
chosen by several buckets keeps the largest of its CEs (the authors' amax scatter), and the loss is the mean over
the positions chosen at least once; the others add nothing. The selection carries no gradient; the gathered rows
and the positive logits do, with respect to ``hidden`` and ``item_emb``.

Defaults follow the authors' sizing rule n_b = b_x = int(2 sqrt(batch_size x interactions_per_user)). Our
``hidden`` holds the non-pad positions only, so B x ipu is exactly N: ``None`` means int(2 sqrt(N)) on each call.
b_y defaults to 256, as in their Beauty and Gowalla configs. Because the positions are already non-pad and the
item table has no pad row, the authors' padding masks reduce to clamping: b_x at most N, b_y at most C (their
top-k would raise there). With mix_x the authors' mix also takes the pad rows (LayerNorm outputs of zeros); here
it mixes the non-pad positions only.

Deviation from the authors: the mean runs over the positions selected at least once. The authors keep positions
whose loss is non-zero, which also drops a selected position whose CE rounds to exactly 0 in float32 (a very
confident one); the value differs only in that denominator, the gradient of such a position is 0 either way.

Memory. The authors hold the (n_b, C) item projections at once and, per SCE.md section 3, about four
(n_b, b_x, b_y + 1) tensors at the peak (logits, their -inf copy, the concatenation, the saved log-softmax) plus
the gradient of each gathered row set. Here:
- both top-k searches run over slices of rows (``block_mib``), merging each slice's top-k into a running one,
  so the (n_b, C) and (n_b, N) projections never exist (with mix_x the (N, n_b) Gaussian mix is drawn a slice
  at a time too);
- the bucket logits are made by a custom autograd function a group of buckets at a time, masked in place, and
  the positive is never concatenated: its column joins the row's log-partition through a logaddexp. Only the
  (n_b, b_x) log-partitions are saved; the backward recomputes each group's logits and adds its gradient (and
  the positive's) straight into one (N, D) and one (C, D) buffer, so the catalogue-sized gradient exists once.
So beyond the inputs and their gradients, the peak is about one group's logits (about ``block_mib``) plus small
(n_b, b_x) and (n_b, b_y) index tensors, whatever C.

Shape letters: the common ones and SCE's own (n_b, b_x, b_y, G, M) as in ``docs/notation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    accumulator_bytes,
    block_bytes,
    block_mib_param,
    check_block_mib,
    check_bool,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.cards import Ladder, LossCard, register_card
from rece_bench.losses.precision import accumulate_dtype, amp_backward, amp_forward, matmul_acc
from rece_bench.losses.sampling import add_positive_grad, positive_logits


def default_bucket_size(n_positions: int) -> int:
    """The authors' n_b = b_x = int(2 sqrt(B ipu)), with B ipu = N (our positions are the non-pad ones)."""
    return max(1, int(2 * math.sqrt(n_positions)))


@dataclass(frozen=True)
class ScePlan:
    """The sizes of one call."""

    n_positions: int  # N
    num_items: int  # C
    n_buckets: int  # n_b
    size_x: int  # b_x, at most N
    size_y: int  # b_y, at most C
    rows_per_slice: int  # M: rows of one projection slice
    buckets_per_group: int  # G


def make_plan(
    n_positions: int,
    num_items: int,
    dim: int,
    n_buckets: int | None,
    size_x: int | None,
    size_y: int,
    block_bytes: int,
    elem_bytes: int,
) -> ScePlan:
    n_b = n_buckets or default_bucket_size(n_positions)
    b_x = min(size_x or default_bucket_size(n_positions), n_positions)
    b_y = min(size_y, num_items)
    rows_per_slice = max(1, block_bytes // (n_b * elem_bytes))
    group = max(1, min(n_b, block_bytes // bucket_bytes(b_x, b_y, dim, elem_bytes)))
    return ScePlan(n_positions, num_items, n_b, b_x, b_y, rows_per_slice, group)


def bucket_bytes(size_x: int, size_y: int, dim: int, elem_bytes: int) -> int:
    """One bucket's working memory: its logits (made in the inputs' dtype, worked on in the accumulate dtype),
    logsumexp's temporary and the -inf mask, its gathered rows and their gradients."""
    acc_bytes = max(elem_bytes, 4)
    logit = acc_bytes + (elem_bytes if elem_bytes < acc_bytes else 0)
    return size_x * size_y * (logit + acc_bytes + 1) + 2 * (size_x + size_y) * dim * elem_bytes


# ---------------------------------------------------------------- selection (no gradient)


@torch.no_grad()
def draw_directions(
    hidden: torch.Tensor, n_buckets: int, mix_x: bool, generator: torch.Generator | None, rows_per_slice: int
) -> torch.Tensor:
    """(n_b, D) fresh random directions, scaled by D^(-1/4) as the authors do (no top-k depends on the scale).

    mix_x False: Gaussian directions. mix_x True: Omega = G^T X with G ~ N(0, 1) of shape (N, n_b), each
    direction a random combination of this call's positions; G is drawn M rows at a time (one draw of the
    whole (N, n_b) when N <= M).
    """
    n_positions, dim = hidden.shape
    scale = dim**-0.25
    acc = accumulate_dtype(hidden.dtype)  # drawn there, so a seed gives the same draws in any precision
    if not mix_x:
        directions = torch.randn(n_buckets, dim, generator=generator, device=hidden.device, dtype=acc).mul_(scale)
        return directions.to(hidden.dtype)
    directions = torch.zeros(n_buckets, dim, device=hidden.device, dtype=acc)
    for start in range(0, n_positions, rows_per_slice):
        rows = hidden[start : start + rows_per_slice].to(acc)  # (M, D)
        mix = torch.randn(rows.shape[0], n_buckets, generator=generator, device=hidden.device, dtype=acc)
        directions.addmm_(mix.T, rows, alpha=scale)  # (n_b, M) x (M, D) -> (n_b, D)
    return directions.to(hidden.dtype)


@torch.no_grad()
def top_rows(directions: torch.Tensor, rows: torch.Tensor, k: int, rows_per_slice: int) -> torch.Tensor:
    """(n_b, k) long: per direction, the k rows of ``rows`` (R, D) with the largest projections, k <= R.

    One slice of M rows is projected at a time; its top-k joins the running top-k, so the (n_b, R) projections
    are never held. The order within a bucket is by projection (it does not matter to the loss).
    """
    best_values = best_rows = None
    for start in range(0, rows.shape[0], rows_per_slice):
        scores = directions @ rows[start : start + rows_per_slice].T  # (n_b, D) x (D, M) -> (n_b, M)
        values, index = scores.topk(min(k, scores.shape[1]), dim=1)  # (n_b, <=k)
        del scores  # before the next slice's projections are made: one slice alive at a time
        index.add_(start)
        if best_values is not None:
            values, index = torch.cat([best_values, values], dim=1), torch.cat([best_rows, index], dim=1)
            values, keep = values.topk(min(k, values.shape[1]), dim=1)  # (n_b, 2k) -> (n_b, k)
            index = index.gather(1, keep)
        best_values, best_rows = values, index
    assert best_rows is not None and best_rows.shape[1] == k
    return best_rows


def select(
    hidden: torch.Tensor, item_emb: torch.Tensor, directions: torch.Tensor, plan: ScePlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (n_b, b_x) and items (n_b, b_y) of every bucket."""
    pos_ids = top_rows(directions, hidden.detach(), plan.size_x, plan.rows_per_slice)
    item_ids = top_rows(directions, item_emb.detach(), plan.size_y, plan.rows_per_slice)
    return pos_ids, item_ids


# ---------------------------------------------------------------- bucket cross-entropy


def _group_logits(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    pos_ids: torch.Tensor,
    item_ids: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of G buckets with each position's positive masked to -inf, and the gathered rows.

    pos_ids (G, b_x), item_ids (G, b_y) -> logits (G, b_x, b_y), rows_x (G, b_x, D), rows_y (G, b_y, D). The
    product runs in the inputs' dtype, the logits come out in its accumulate dtype (float32 for bf16 and fp16).
    """
    n_group, dim = pos_ids.shape[0], hidden.shape[1]
    rows_x = hidden.index_select(0, pos_ids.reshape(-1)).view(n_group, -1, dim)  # (G b_x, D) -> (G, b_x, D)
    rows_y = item_emb.index_select(0, item_ids.reshape(-1)).view(n_group, -1, dim)  # (G b_y, D) -> (G, b_y, D)
    logits = matmul_acc(rows_x, rows_y.transpose(1, 2))  # (G, b_x, D) x (G, D, b_y) -> (G, b_x, b_y)
    own = targets[pos_ids].unsqueeze(2) == item_ids.unsqueeze(1)  # (G, b_x, 1) == (G, 1, b_y) -> (G, b_x, b_y)
    return logits.masked_fill_(own, -torch.inf), rows_x, rows_y


def _group_log_partition(hidden, item_emb, targets, pos_ids, item_ids) -> torch.Tensor:  # noqa: ANN001
    """(G, b_x) log-sum-exp over each row's bucket items, its positive left out (-inf when no item is left).

    A function of its own so that the group's logits are freed on return, before the next group's are made."""
    logits, _, _ = _group_logits(hidden, item_emb, targets, pos_ids, item_ids)
    return torch.logsumexp(logits, dim=2)


def _add_group_grads(
    grad_hidden: torch.Tensor,
    grad_items: torch.Tensor,
    inputs: tuple[torch.Tensor, ...],
    log_partition: torch.Tensor,
    grad_ce: torch.Tensor,
) -> None:
    """Add a group's negatives' share of the gradients in place; log_partition and grad_ce are (G, b_x)."""
    hidden, _, _, pos_ids, item_ids = inputs
    logits, rows_x, rows_y = _group_logits(*inputs)
    # d ce / d s_j = softmax_j, times the incoming gradient; the masked pairs give exp(-inf) = 0
    probs = logits.sub_(log_partition.unsqueeze(2)).exp_().mul_(grad_ce.unsqueeze(2))  # (G, b_x, b_y)
    grad_x = matmul_acc(probs, rows_y)  # (G, b_x, b_y) x (G, b_y, D) -> (G, b_x, D)
    grad_y = matmul_acc(probs.transpose(1, 2), rows_x)  # (G, b_y, b_x) x (G, b_x, D) -> (G, b_y, D)
    dim = hidden.shape[1]
    grad_hidden.index_add_(0, pos_ids.reshape(-1), grad_x.view(-1, dim))  # (G b_x, D) rows at the positions
    grad_items.index_add_(0, item_ids.reshape(-1), grad_y.view(-1, dim))  # (G b_y, D) rows at the items


class _BucketCrossEntropy(torch.autograd.Function):
    """CE of every (bucket, selected position): log(exp(s_y) + sum_{j in bucket, j != y} exp(s_j)) - s_y.

    Returns (n_b, b_x). Streams over groups of G buckets; saves only the (n_b, b_x) log-partitions and
    recomputes each group's logits in the backward pass. Logits, log-partitions and gradient buffers in the
    accumulate dtype (float32 for bf16 and fp16), the gradients cast to the inputs' dtype once at the end.
    """

    @staticmethod
    @amp_forward
    def forward(ctx, hidden, item_emb, targets, pos_ids, item_ids, group: int):  # noqa: ANN001
        positive = positive_logits(hidden, item_emb, targets, accumulate=True)  # (N,)
        log_partition = torch.empty(pos_ids.shape, dtype=positive.dtype, device=hidden.device)  # (n_b, b_x)
        for start in range(0, pos_ids.shape[0], group):
            rows = slice(start, start + group)
            log_partition[rows] = _group_log_partition(hidden, item_emb, targets, pos_ids[rows], item_ids[rows])
        torch.logaddexp(log_partition, positive[pos_ids], out=log_partition)  # the appended positive column
        ctx.save_for_backward(hidden, item_emb, targets, pos_ids, item_ids, positive, log_partition)
        ctx.group = group
        return log_partition - positive[pos_ids]

    @staticmethod
    @amp_backward
    def backward(ctx, grad_ce):  # noqa: ANN001
        hidden, item_emb, targets, pos_ids, item_ids, positive, log_partition = ctx.saved_tensors
        acc = positive.dtype
        grad_ce = grad_ce.to(acc)
        grad_hidden = torch.zeros(hidden.shape, dtype=acc, device=hidden.device)
        grad_items = torch.zeros(item_emb.shape, dtype=acc, device=item_emb.device)
        for start in range(0, pos_ids.shape[0], ctx.group):
            rows = slice(start, start + ctx.group)
            inputs = hidden, item_emb, targets, pos_ids[rows], item_ids[rows]
            _add_group_grads(grad_hidden, grad_items, inputs, log_partition[rows], grad_ce[rows])
        # d ce / d s_y = softmax_y - 1, summed over the buckets that hold the position
        per_slot = (positive[pos_ids] - log_partition).exp_().sub_(1).mul_(grad_ce)  # (n_b, b_x)
        coef = torch.zeros_like(positive).index_add_(0, pos_ids.reshape(-1), per_slot.reshape(-1))  # (N,)
        add_positive_grad(grad_hidden, grad_items, hidden, item_emb, targets, coef)
        return grad_hidden.to(hidden.dtype), grad_items.to(item_emb.dtype), None, None, None, None


def mean_over_selected(per_bucket: torch.Tensor, pos_ids: torch.Tensor, n_positions: int) -> torch.Tensor:
    """The authors' reduction: each position's largest CE over the buckets that hold it (amax scatter; autograd
    splits the gradient evenly between exact ties), then the mean over the positions held at least once."""
    flat = pos_ids.reshape(-1)  # (n_b b_x,)
    per_position = per_bucket.new_zeros(n_positions).scatter_reduce(
        0, flat, per_bucket.reshape(-1), reduce="amax", include_self=False
    )  # (N,), 0 where no bucket holds the position
    n_selected = torch.zeros(n_positions, dtype=torch.bool, device=flat.device).index_fill_(0, flat, True).sum()
    return per_position.sum() / n_selected


# ---------------------------------------------------------------- the loss


@register
class ScalableCrossEntropy(Loss):
    name = "sce"
    description = "SCE: CE within buckets of the top-scoring positions and items along random directions."
    params = (
        ParamSpec("n_buckets", "int | None", None, "n_b random directions; None: int(2 sqrt(N)) on each call."),
        ParamSpec("bucket_size_x", "int | None", None, "b_x positions per bucket; None: int(2 sqrt(N)), at most N."),
        ParamSpec("bucket_size_y", "int", 256, "b_y items per bucket (at most C)."),
        ParamSpec("mix_x", "bool", False, "Directions as random mixes of the batch's positions, not Gaussian."),
        block_mib_param("one projection slice or bucket group"),
        ParamSpec("generator", "Generator | None", None, "Random generator for the directions (seeding)."),
    )

    def __init__(
        self,
        num_items: int,
        n_buckets: int | None = None,
        bucket_size_x: int | None = None,
        bucket_size_y: int = 256,
        mix_x: bool = False,
        block_mib: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items)
        self.n_buckets = None if n_buckets is None else check_int("n_buckets", n_buckets, minimum=1)
        self.bucket_size_x = None if bucket_size_x is None else check_int("bucket_size_x", bucket_size_x, minimum=1)
        self.bucket_size_y = check_int("bucket_size_y", bucket_size_y, minimum=1)
        self.mix_x = check_bool("mix_x", mix_x)
        self.block_mib = check_block_mib(block_mib)
        self.generator = check_generator(generator)

    def plan(self, n_positions: int, dim: int, elem_bytes: int = 4, device: torch.device | None = None) -> ScePlan:
        """The sizes of a call; ``device`` None (an estimate without a device): a CPU's block when block_mib is None."""
        return make_plan(
            n_positions, self.num_items, dim, self.n_buckets, self.bucket_size_x, self.bucket_size_y,
            block_bytes(self.block_mib, device), elem_bytes,
        )  # fmt: skip

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        plan = self.plan(hidden.shape[0], hidden.shape[1], hidden.element_size(), hidden.device)
        directions = draw_directions(hidden.detach(), plan.n_buckets, self.mix_x, self.generator, plan.rows_per_slice)
        return self.loss_from_directions(hidden, item_emb, targets, directions)

    def loss_from_directions(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, directions: torch.Tensor
    ) -> torch.Tensor:
        """The loss for given directions (n_b, D), for tests and for callers with their own draws."""
        plan = self.plan(hidden.shape[0], hidden.shape[1], hidden.element_size(), hidden.device)
        pos_ids, item_ids = select(hidden, item_emb, directions, plan)  # (n_b, b_x), (n_b, b_y)
        per_bucket = _BucketCrossEntropy.apply(hidden, item_emb, targets, pos_ids, item_ids, plan.buckets_per_group)
        return mean_over_selected(per_bucket, pos_ids, hidden.shape[0])

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        plan = self.plan(n_positions, dim, elem_bytes)
        n_b, b_x, b_y = plan.n_buckets, plan.size_x, plan.size_y
        group = plan.buckets_per_group * bucket_bytes(b_x, b_y, dim, elem_bytes)
        projection = n_b * plan.rows_per_slice * elem_bytes + 4 * n_b * max(b_x, b_y) * (elem_bytes + 8)  # top-k
        selection = n_b * (b_x + b_y) * 8 + 4 * n_b * b_x * elem_bytes  # ids; log-partitions, CE and its grad
        positives = 3 * n_positions * dim * elem_bytes + 8 * n_positions * elem_bytes  # gathered targets' rows
        accumulators = accumulator_bytes(n_positions, self.num_items, dim, elem_bytes)
        return max(group, projection) + selection + positives + accumulators


register_card(
    LossCard(
        name="sce",
        label="SCE",
        abbreviations={"n_buckets": "n_b", "bucket_size_x": "b_x", "bucket_size_y": "b_y", "mix_x": "mix"},
        # Batch 256 and b_y 1,024, n_b = b_x from the formula on each call's N (so they follow the batch). The batch is
        # cut to 64 first, as in the other ladders; then b_y through the authors' grid {64, 256, 512, 1024, 4096} (their
        # best configurations use 256 on four of six datasets and 64 on Behance, so it buys little quality above 256);
        # then the batch again. With the logits streamed, b_y moves the peak by at most a group of buckets (block_mib):
        # the batch, through the model's activations, is the real lever; the b_y cuts are cheap to probe.
        ladder=Ladder(
            {"batch_size": 256, "bucket_size_y": 1024},
            (("batch_size", (128, 64)), ("bucket_size_y", (512, 256, 64)), ("batch_size", (32, 16, 8, 4))),
        ),
        report_rank=70,
        # shared/reference/SCE.md section 2, the authors' configs: Beauty (leave-one-out), and the sce_max_ndcg rows
        # of the temporal datasets (the best NDCG@10); d 64, maxlen 200, 2 blocks, 1 head, lr 1e-3 as in the paper's
        # SASRec.
        paper_presets={
            "beauty": {
                "batch_size": 1024,
                "dropout": 0.6,
                "patience": 50,
                "loss_params": {"n_buckets": 202, "bucket_size_x": 202, "bucket_size_y": 256, "mix_x": False},
            },
            "gowalla": {
                "batch_size": 2048,
                "loss_params": {"n_buckets": 882, "bucket_size_x": 882, "bucket_size_y": 256, "mix_x": False},
            },
            "beeradvocate": {
                "batch_size": 512,
                "loss_params": {"n_buckets": 615, "bucket_size_x": 615, "bucket_size_y": 256, "mix_x": True},
            },
            "behance": {
                "batch_size": 256,
                "loss_params": {"n_buckets": 261, "bucket_size_x": 261, "bucket_size_y": 64, "mix_x": True},
            },
            "kindle": {
                "batch_size": 2048,
                "loss_params": {"n_buckets": 658, "bucket_size_x": 658, "bucket_size_y": 256, "mix_x": True},
            },
        },  # fmt: skip,
    )
)
