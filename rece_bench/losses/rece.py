"""RECE (Reduced Cross-Entropy, CIKM 2024, Algorithm 1) with the authors' semantics (REFERENCE section 1).

Per round, random vectors bucket the positions and the items (argmax of dot products); both sorted orders are
cut into n_c equal chunks, and chunk i of positions is scored against item chunks i-n_ec .. i+n_ec. The loss
of a position is CE over its candidates (the union over rounds, each counted once, its positive and the pad
slots masked) plus its positive. Counting a repeated candidate once is what the authors' -log(k) correction
achieves; here it is done by keeping a pair in the first round whose window holds it, which gives the same
value and gradient. Within one round a window never repeats an item, so the pair (t, j) appears in an earlier
round q' exactly when |chunk_q'(j) - chunk_q'(t)| <= n_ec: no sort, no per-position candidate list.

Memory, beyond the authors: the (r, n_b, C) projections are never held (items are bucketed in slices);
candidate ids live per chunk as a view of the sorted order; the logits are streamed over groups of chunks by
a custom autograd function that keeps only the (N,) log-partition and recomputes each group in the backward
pass.

Letters: r rounds, n_b buckets, n_c chunks, P positions per chunk, I items per chunk, W = (1 + 2 n_ec) I
candidates per chunk, G chunks per streamed group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    check_float,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.sampling import add_positive_grad, positive_logits

_MIB = 1 << 20
_INT16_MAX = 32767


def default_n_buckets(n_positions: int, num_items: int, n_extra_chunks: int, buckets_per_chunk: float) -> int:
    """n_b* = sqrt(4 alpha_bc (1 + 2 n_ec) min(C, N)), the authors' memory-optimal bucket count (floored)."""
    return max(1, int(math.sqrt(4 * buckets_per_chunk * (1 + 2 * n_extra_chunks) * min(num_items, n_positions))))


@dataclass(frozen=True)
class RecePlan:
    """The sizes of one call: how positions and items are cut into chunks and streamed."""

    n_positions: int
    num_items: int
    n_rounds: int
    n_buckets: int
    n_chunks: int
    n_extra: int
    pos_per_chunk: int  # P
    items_per_chunk: int  # I
    chunks_per_group: int  # G

    @property
    def window(self) -> int:  # W
        return (1 + 2 * self.n_extra) * self.items_per_chunk

    @property
    def chunk_dtype(self) -> torch.dtype:
        return torch.int16 if self.n_chunks + 2 * self.n_extra < _INT16_MAX else torch.int32


def make_plan(
    n_positions: int,
    num_items: int,
    n_buckets: int,
    buckets_per_chunk: float,
    n_extra: int,
    n_rounds: int,
    block_bytes: int,
    elem_bytes: int,
) -> RecePlan:
    n_chunks = max(1, round(n_buckets / buckets_per_chunk))
    pos_per_chunk = -(-n_positions // n_chunks)
    items_per_chunk = -(-num_items // n_chunks)
    window = (1 + 2 * n_extra) * items_per_chunk
    # per chunk: logits, masks and chunk-index gaps (P, W); span embeddings and their grad (I, D~64)
    per_chunk = pos_per_chunk * window * (elem_bytes + 3 + 4) + items_per_chunk * 2 * 64 * elem_bytes
    group = max(1, min(n_chunks, block_bytes // max(1, per_chunk)))
    return RecePlan(
        n_positions, num_items, n_rounds, n_buckets, n_chunks, n_extra, pos_per_chunk, items_per_chunk, group
    )


@dataclass(frozen=True)
class Rounds:
    """Per round, the sorted orders of positions and items and (r > 1 only) each row's chunk index."""

    pos_order: torch.Tensor  # (r, N) long
    item_order: torch.Tensor  # (r, C) long
    pos_chunk: torch.Tensor | None  # (r, N) int16/int32
    item_chunk: torch.Tensor | None  # (r, C) int16/int32


def assign_buckets(rows: torch.Tensor, proj: torch.Tensor, block_bytes: int) -> torch.Tensor:
    """(r, M) bucket of every row in every round; rows (M, D), proj (r, n_b, D); a slice of rows at a time."""
    n_rounds, n_buckets, dim = proj.shape
    flat = proj.reshape(n_rounds * n_buckets, dim)  # (r, n_b, D) -> (r n_b, D)
    out = torch.empty(n_rounds, rows.shape[0], dtype=torch.long, device=rows.device)
    step = max(1, block_bytes // (n_rounds * n_buckets * rows.element_size()))
    for start in range(0, rows.shape[0], step):
        scores = rows[start : start + step] @ flat.T  # (Ms, D) x (D, r n_b) -> (Ms, r n_b)
        out[:, start : start + step] = scores.view(-1, n_rounds, n_buckets).argmax(dim=2).T  # -> (r, Ms)
    return out


def chunk_index(order: torch.Tensor, per_chunk: int, dtype: torch.dtype) -> torch.Tensor:
    """(r, M): the chunk that row m falls into in round q, from the sorted order (r, M)."""
    slot_chunk = (torch.arange(order.shape[1], device=order.device) // per_chunk).to(dtype)  # (M,)
    out = torch.empty(order.shape, dtype=dtype, device=order.device)
    return out.scatter_(1, order, slot_chunk.expand_as(order))  # out[q, order[q, s]] = s // per_chunk


@torch.no_grad()
def draw_rounds(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    plan: RecePlan,
    generator: torch.Generator | None,
    block_bytes: int,
) -> Rounds:
    """Fresh random vectors (r, n_b, D), shared by positions and items within a round; sort both by bucket."""
    shape = (plan.n_rounds, plan.n_buckets, hidden.shape[1])
    proj = torch.randn(shape, generator=generator, device=hidden.device, dtype=hidden.dtype)
    pos_order = assign_buckets(hidden, proj, block_bytes).argsort(dim=1, stable=True)  # (r, N)
    item_order = assign_buckets(item_emb, proj, block_bytes).argsort(dim=1, stable=True)  # (r, C)
    if plan.n_rounds == 1:  # one round cannot repeat a candidate
        return Rounds(pos_order, item_order, None, None)
    pos_chunk = chunk_index(pos_order, plan.pos_per_chunk, plan.chunk_dtype)
    item_chunk = chunk_index(item_order, plan.items_per_chunk, plan.chunk_dtype)
    return Rounds(pos_order, item_order, pos_chunk, item_chunk)


def padded_orders(rounds: Rounds, plan: RecePlan, q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round q's position order padded to n_c P slots, and its item order with n_ec pad chunks before and
    enough after for the last window; pad slots hold id 0 and are masked by slot index."""
    pos_slots = torch.zeros(plan.n_chunks * plan.pos_per_chunk, dtype=torch.long, device=rounds.pos_order.device)
    pos_slots[: plan.n_positions] = rounds.pos_order[q]
    lead = plan.n_extra * plan.items_per_chunk
    item_slots = torch.zeros(
        (plan.n_chunks + 2 * plan.n_extra) * plan.items_per_chunk, dtype=torch.long, device=pos_slots.device
    )
    item_slots[lead : lead + plan.num_items] = rounds.item_order[q]
    return pos_slots, item_slots


@dataclass(frozen=True)
class Group:
    """One streamed group of G position chunks of a round, scored against its span of G + 2 n_ec item chunks.

    Logits are laid out (O, G, P, I) with O = 1 + 2 n_ec window offsets: [k, g, p, i] scores position p of
    chunk c = start + g against item i of chunk c - n_ec + k. Each offset k is one bmm against a contiguous
    slice of the span, so every item is gathered once per group, not once per window that holds it.
    """

    logits: torch.Tensor  # (O, G, P, I), masked to -inf
    pos: torch.Tensor  # (G, P) position ids (pad slots hold 0)
    pos_hidden: torch.Tensor  # (G, P, D)
    span: torch.Tensor  # (G + 2 n_ec, I) item ids (pad slots hold 0)
    span_emb: torch.Tensor  # (G + 2 n_ec, I, D)


def group_logits(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    plan: RecePlan,
    rounds: Rounds,
    q: int,
    slots: tuple[torch.Tensor, torch.Tensor],
    chunks: range,
) -> Group:
    """The masked logits of chunks ``chunks`` of round q (pad items, each position's positive, and pairs
    already scored in an earlier round masked)."""
    n_group, p_size, i_size, n_off = len(chunks), plan.pos_per_chunk, plan.items_per_chunk, 1 + 2 * plan.n_extra
    pos = slots[0][chunks.start * p_size : chunks.stop * p_size].view(n_group, p_size)  # (G P,) -> (G, P)
    span_slots = slice(chunks.start * i_size, (chunks.stop + 2 * plan.n_extra) * i_size)
    span = slots[1][span_slots].view(-1, i_size)  # ((G + 2 n_ec) I,) -> (G + 2 n_ec, I)
    pos_hidden, span_emb = hidden[pos], item_emb[span]  # (G, P, D), (G + 2 n_ec, I, D)
    logits = torch.empty(n_off, n_group, p_size, i_size, dtype=hidden.dtype, device=hidden.device)
    for k in range(n_off):
        torch.bmm(pos_hidden, span_emb[k : k + n_group].transpose(1, 2), out=logits[k])  # (G,P,D)x(G,D,I)
    cand = span.as_strided((n_off, n_group, i_size), (i_size, i_size, 1))  # cand[k, g] = span[g + k], a view
    slot = span_slots.start + torch.arange(span.numel(), device=span.device).view(span.shape)  # (G + 2 n_ec, I)
    lead = plan.n_extra * i_size
    pad = (slot < lead) | (slot >= lead + plan.num_items)  # (G + 2 n_ec, I)
    masked = pad.as_strided(cand.shape, cand.stride())[:, :, None, :]  # (O, G, 1, I)
    masked = masked | (cand[:, :, None, :] == targets[pos][None, :, :, None])  # the positive, (O, G, P, I)
    if q > 0:
        masked |= seen_in_earlier_round(plan, rounds, q, pos, cand)
    return Group(logits.masked_fill_(masked, -torch.inf), pos, pos_hidden, span, span_emb)


def seen_in_earlier_round(
    plan: RecePlan, rounds: Rounds, q: int, pos: torch.Tensor, cand: torch.Tensor
) -> torch.Tensor:
    """(O, G, P, I) bool: pair (t, j) already scored in a round q' < q: |chunk_q'(j) - chunk_q'(t)| <= n_ec.

    pos (G, P) and cand (O, G, I) hold ids; within one round a window never repeats an item, so this
    counts each pair once without sorting anything.
    """
    assert rounds.pos_chunk is not None and rounds.item_chunk is not None
    shape = (cand.shape[0], *pos.shape, cand.shape[2])  # (O, G, P, I)
    seen = torch.zeros(shape, dtype=torch.bool, device=pos.device)
    gap = torch.empty(shape, dtype=plan.chunk_dtype, device=pos.device)  # reused: no allocation per round
    near = torch.empty(shape, dtype=torch.bool, device=pos.device)
    for earlier in range(q):
        pos_chunk = rounds.pos_chunk[earlier][pos][None, :, :, None]  # (G, P) -> (1, G, P, 1)
        cand_chunk = rounds.item_chunk[earlier][cand][:, :, None, :]  # (O, G, I) -> (O, G, 1, I)
        if plan.n_extra == 0:
            torch.eq(cand_chunk, pos_chunk, out=near)
        else:
            torch.sub(cand_chunk, pos_chunk, out=gap).abs_()
            torch.le(gap, plan.n_extra, out=near)
        seen.logical_or_(near)
    return seen


class _ReceCrossEntropy(torch.autograd.Function):
    """Per-position RECE loss: log(exp(s_y) + sum_{j in U_t, j != y} exp(s_j)) - s_y, with U_t the candidates.

    The forward streams over groups of chunks keeping only the (N,) log-partition; the backward recomputes
    each group's logits from the saved orders, and adds the positive's gradient into the same buffers.
    """

    @staticmethod
    def forward(ctx, hidden, item_emb, targets, plan: RecePlan, rounds: Rounds):  # noqa: ANN001
        lse = torch.full((plan.n_positions,), -torch.inf, dtype=hidden.dtype, device=hidden.device)  # (N,)
        for q in range(plan.n_rounds):
            slots = padded_orders(rounds, plan, q)
            round_lse = torch.empty(plan.n_chunks, plan.pos_per_chunk, dtype=hidden.dtype, device=hidden.device)
            for chunks in _groups(plan):
                logits = group_logits(hidden, item_emb, targets, plan, rounds, q, slots, chunks).logits
                round_lse[chunks.start : chunks.stop] = torch.logsumexp(logits, dim=(0, 3))  # (O,G,P,I) -> (G,P)
            order = rounds.pos_order[q]  # (N,)
            lse[order] = torch.logaddexp(lse[order], round_lse.view(-1)[: plan.n_positions])  # sorted -> (N,)
        positive = positive_logits(hidden, item_emb, targets)  # (N,)
        log_partition = torch.logaddexp(positive, lse)  # the positive's own column joins the candidates
        ctx.save_for_backward(hidden, item_emb, targets, positive, log_partition)
        ctx.plan, ctx.rounds = plan, rounds
        return log_partition - positive

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, positive, log_partition = ctx.saved_tensors
        plan, rounds = ctx.plan, ctx.rounds
        grads = torch.zeros_like(hidden), torch.zeros_like(item_emb)
        coef = (positive - log_partition).exp_().sub_(1).mul_(grad_loss)  # d loss / d s_pos = softmax_pos - 1
        add_positive_grad(*grads, hidden, item_emb, targets, coef)
        for q in range(plan.n_rounds):
            slots = padded_orders(rounds, plan, q)
            scale = _sorted_padded(log_partition, grad_loss, rounds.pos_order[q], plan)  # (n_c P,) each
            for chunks in _groups(plan):
                _backward_group(grads, hidden, item_emb, targets, plan, rounds, q, slots, chunks, scale)
        return grads[0], grads[1], None, None, None


def _backward_group(
    grads: tuple[torch.Tensor, torch.Tensor],
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    plan: RecePlan,
    rounds: Rounds,
    q: int,
    slots: tuple[torch.Tensor, torch.Tensor],
    chunks: range,
    scale: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Recompute one group's logits and add its share of the gradients: d loss / d s_tj = g_t softmax_tj."""
    grad_hidden, grad_items = grads
    group = group_logits(hidden, item_emb, targets, plan, rounds, q, slots, chunks)
    pos, n_group = group.pos, len(chunks)
    rows = slice(chunks.start * plan.pos_per_chunk, chunks.stop * plan.pos_per_chunk)
    partition, grad = scale[0][rows].view(pos.shape), scale[1][rows].view(pos.shape)  # (G P,) -> (G, P)
    probs = group.logits.sub_(partition[None, :, :, None]).exp_().mul_(grad[None, :, :, None])  # (O, G, P, I)
    grad_pos = torch.zeros_like(group.pos_hidden)  # (G, P, D)
    grad_span = torch.zeros_like(group.span_emb)  # (G + 2 n_ec, I, D)
    for k in range(probs.shape[0]):
        grad_pos.baddbmm_(probs[k], group.span_emb[k : k + n_group])  # (G, P, I) x (G, I, D) -> (G, P, D)
        grad_span[k : k + n_group].baddbmm_(probs[k].transpose(1, 2), group.pos_hidden)  # (G,I,P)x(G,P,D)
    grad_hidden.index_add_(0, pos.reshape(-1), grad_pos.view(-1, hidden.shape[1]))  # (G P, D) rows at pos
    grad_items.index_add_(0, group.span.reshape(-1), grad_span.view(-1, hidden.shape[1]))  # rows at span ids


def _groups(plan: RecePlan) -> list[range]:
    return [
        range(c, min(c + plan.chunks_per_group, plan.n_chunks)) for c in range(0, plan.n_chunks, plan.chunks_per_group)
    ]


def _sorted_padded(
    lse: torch.Tensor, grad_lse: torch.Tensor, order: torch.Tensor, plan: RecePlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-partition and the incoming gradient in round order, padded to n_c P slots; pad slots get lse +inf and
    gradient 0, so that exp(logit - lse) is 0 there even where the logit would overflow."""
    size = plan.n_chunks * plan.pos_per_chunk
    lse_slots = torch.full((size,), torch.inf, dtype=lse.dtype, device=lse.device)
    grad_slots = torch.zeros(size, dtype=lse.dtype, device=lse.device)
    lse_slots[: plan.n_positions] = lse[order]  # (N,) -> sorted
    grad_slots[: plan.n_positions] = grad_lse[order]
    return lse_slots, grad_slots


@register
class ReducedCrossEntropy(Loss):
    name = "rece"
    description = "RECE: CE over candidates found by random-projection buckets, chunks and neighbouring chunks."
    params = (
        ParamSpec("n_buckets", "int | None", None, "Buckets n_b; None: the n_b* formula on each call's N and C."),
        ParamSpec("buckets_per_chunk", "float", 1.0, "alpha_bc = n_b / n_c (1 in every published config)."),
        ParamSpec("n_extra_chunks", "int", 1, "n_ec: neighbouring item chunks scored on each side."),
        ParamSpec("rounds", "int", 1, "r: rounds of fresh random vectors; candidates are their union."),
        ParamSpec("block_mib", "float", 32.0, "Working memory of one streamed group of chunks, in MiB."),
        ParamSpec("generator", "Generator | None", None, "Random generator for the projections (seeding)."),
    )

    def __init__(
        self,
        num_items: int,
        n_buckets: int | None = None,
        buckets_per_chunk: float = 1.0,
        n_extra_chunks: int = 1,
        rounds: int = 1,
        block_mib: float = 32.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items)
        self.n_buckets = None if n_buckets is None else check_int("n_buckets", n_buckets, minimum=1)
        self.buckets_per_chunk = check_float("buckets_per_chunk", buckets_per_chunk, 0.0, 1e6, low_open=True)
        self.n_extra_chunks = check_int("n_extra_chunks", n_extra_chunks, minimum=0)
        self.rounds = check_int("rounds", rounds, minimum=1)
        self.block_mib = check_float("block_mib", block_mib, 0.0, 1e6, low_open=True)
        self.generator = check_generator(generator)

    def plan(self, n_positions: int, elem_bytes: int = 4) -> RecePlan:
        n_buckets = self.n_buckets or default_n_buckets(
            n_positions, self.num_items, self.n_extra_chunks, self.buckets_per_chunk
        )
        block_bytes = int(self.block_mib * _MIB)
        return make_plan(
            n_positions,
            self.num_items,
            n_buckets,
            self.buckets_per_chunk,
            self.n_extra_chunks,
            self.rounds,
            block_bytes,
            elem_bytes,
        )

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        plan = self.plan(hidden.shape[0], hidden.element_size())
        rounds = draw_rounds(hidden, item_emb, plan, self.generator, int(self.block_mib * _MIB))
        return _ReceCrossEntropy.apply(hidden, item_emb, targets, plan, rounds).mean()

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        plan = self.plan(n_positions, elem_bytes)
        orders = self.rounds * (n_positions + self.num_items) * (8 + 4)  # orders and chunk indices
        slots = 4 * 8 * (self.num_items + 2 * plan.window + n_positions)  # padded orders of one round
        return orders + slots + 3 * int(self.block_mib * _MIB) + 6 * n_positions * dim * elem_bytes
