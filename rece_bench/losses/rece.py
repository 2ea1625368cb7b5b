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
a custom autograd function that keeps only the (N,) log-partition and the earlier-round flags packed to one
bit per pair, and recomputes each group in the backward pass.

Shape letters: the common ones and RECE's own (r, n_b, n_c, P, I, W, G) as in ``docs/notation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rece_bench.budget.ladder import Ladder
from rece_bench.kernels import KERNEL_CHOICES, KERNEL_HELP, use_triton
from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    check_choice,
    check_float,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.sampling import add_positive_grad, positive_logits

_MIB = 1 << 20
_INT16_MAX = 32767
_BUCKET_BLOCK = 8 * _MIB  # bucketing slices: faster than 32 MiB at 1 and 2 threads on a 2-core Xeon


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
    # per chunk: logits and logsumexp's temporary, earlier-round flags, their chunk gaps (P, W); span embeddings
    # and their grad (I, D~64)
    per_chunk = pos_per_chunk * window * (2 * elem_bytes + 4) + items_per_chunk * 2 * 64 * elem_bytes
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
    block_bytes = min(block_bytes, _BUCKET_BLOCK)  # scores of a slice stay in cache for the argmax
    pos_order = assign_buckets(hidden, proj, block_bytes).argsort(dim=1, stable=True)  # (r, N)
    item_order = assign_buckets(item_emb, proj, block_bytes).argsort(dim=1, stable=True)  # (r, C)
    if plan.n_rounds == 1:  # one round cannot repeat a candidate
        return Rounds(pos_order, item_order, None, None)
    pos_chunk = chunk_index(pos_order, plan.pos_per_chunk, plan.chunk_dtype)
    item_chunk = chunk_index(item_order, plan.items_per_chunk, plan.chunk_dtype)
    return Rounds(pos_order, item_order, pos_chunk, item_chunk)


_PACK = 0x0102040810204080  # eight 0/1 bytes times this: the eight flags land in the top byte, flag i as bit i
_SPREAD = 0x0101010101010101  # a byte times this: the byte copied into all eight
_BIT_OF_BYTE = 0x8040201008040201 - (1 << 64)  # byte i keeps bit i (the constant as a signed int64)
_ROUND_UP = 0x7F7F7F7F7F7F7F7F  # byte + 0x7F has its top bit set iff the byte is nonzero; no carries


def pack_flags(flags: torch.Tensor) -> torch.Tensor:
    """Contiguous uint8 0/1 flags (8 n,) as uint8 (n,): flag 8 k + i is bit i of byte k (little-endian)."""
    words = flags.view(torch.int64)  # (n,): eight flags per word, one per byte
    return words.mul(_PACK).bitwise_right_shift_(56).bitwise_and_(0xFF).to(torch.uint8)


def unpack_flags(bits: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_flags: uint8 (n,) -> uint8 0/1 (8 n,)."""
    words = bits.to(torch.int64).mul_(_SPREAD).bitwise_and_(_BIT_OF_BYTE)  # byte i of word k: bit i of bits[k]
    words.add_(_ROUND_UP).bitwise_right_shift_(7).bitwise_and_(_SPREAD)  # each byte -> 0 or 1
    return words.view(torch.uint8)


@dataclass(frozen=True)
class RoundSlots:
    """Round q in slots: positions in sorted order padded to n_c P; items in sorted order with n_ec pad chunks
    before and enough after for the last window (pad slots hold id 0 and are masked by slot index); and, per
    position slot, the item slot of that position's positive."""

    q: int
    pos: torch.Tensor  # (n_c P,) long
    items: torch.Tensor  # ((n_c + 2 n_ec) I,) long
    target_slot: torch.Tensor  # (n_c P,) long


def round_slots(rounds: Rounds, plan: RecePlan, targets: torch.Tensor, q: int) -> RoundSlots:
    device = targets.device
    pos = torch.zeros(plan.n_chunks * plan.pos_per_chunk, dtype=torch.long, device=device)
    pos[: plan.n_positions] = rounds.pos_order[q]
    lead = plan.n_extra * plan.items_per_chunk
    items = torch.zeros((plan.n_chunks + 2 * plan.n_extra) * plan.items_per_chunk, dtype=torch.long, device=device)
    items[lead : lead + plan.num_items] = rounds.item_order[q]
    slot_of_item = torch.empty(plan.num_items, dtype=torch.long, device=device)
    slot_of_item.scatter_(0, rounds.item_order[q], torch.arange(lead, lead + plan.num_items, device=device))
    return RoundSlots(q, pos, items, slot_of_item.index_select(0, targets.index_select(0, pos)))


@dataclass(frozen=True)
class Group:
    """One streamed group of G position chunks of a round, scored against its span of G + 2 n_ec item chunks.

    Logits are (G, P, W): [g, p, w] scores position p of chunk c = start + g against the w-th item of its
    window, span rows g I .. (g + 1 + 2 n_ec) I. The windows are an overlapping strided view of the span, so
    every item is gathered once per group and one bmm scores the whole group.

    The logits come unmasked, with the masks beside them: callers zero the masked pairs after the exponential.
    Masking to -inf first would be as exact but slow: the CPU exp kernels leave their vectorised path for
    inputs far below zero (measured 15x slower on -inf), and bool masks are slow to build and apply where
    integer arithmetic and a product by 0/1 bytes are not. Every masked pair but a pad slot (the positive, and
    pairs of an earlier round) is in the position's partition, so a masked logit may set the row's shift.
    """

    logits: torch.Tensor  # (G, P, W), unmasked; each row minus its position's shift when that rides in the bmm
    pos: torch.Tensor  # (G P,) position ids (pad slots hold 0)
    pos_hidden: torch.Tensor  # (G, P, D), or (G, P, D + 1) with minus the shift when it rides in the bmm
    span: torch.Tensor  # ((G + 2 n_ec) I,) item ids (pad slots hold 0)
    span_emb: torch.Tensor  # (G + 2 n_ec, I, D), or (..., D + 1) with a column of ones when the shift rides
    positive: torch.Tensor  # (K,) flat indices into logits of the positives inside their windows
    pad: torch.Tensor | None  # (G, 1, W) bool view, pad item slots; None when the group has none
    keep: torch.Tensor | None  # (G, P, W) uint8, 0 where scored in an earlier round, else 1; None in round 0

    @property
    def windows(self) -> torch.Tensor:
        return window_view(self.span_emb, self.logits.shape[0], self.logits.shape[2])

    def zero_pad_rows_(self, values: torch.Tensor, first_row: int, n_positions: int) -> torch.Tensor:
        """Zero the rows of position pad slots (sorted slots >= N; they repeat position 0's id)."""
        real = n_positions - first_row
        if real < self.pos.numel():
            values.view(self.pos.numel(), -1)[max(real, 0) :] = 0.0
        return values

    def zero_masked_(self, values: torch.Tensor) -> torch.Tensor:
        """Zero every masked pair of ``values`` (G, P, W) in place (after exp: a masked pair adds nothing)."""
        values.view(-1).index_fill_(0, self.positive, 0.0)
        if self.pad is not None:
            values.masked_fill_(self.pad, 0.0)
        if self.keep is not None:
            values.mul_(self.keep)
        return values


def window_view(span_emb: torch.Tensor, n_group: int, width: int) -> torch.Tensor:
    """(G, W, D), a view of the span (G + 2 n_ec, I, D): window g is span rows g I .. g I + W."""
    i_size, dim = span_emb.shape[1:]
    return span_emb.view(-1, dim).as_strided((n_group, width, dim), (i_size * dim, dim, 1))


def with_column(rows: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """(M, D) and (M,) -> (M, D + 1) contiguous."""
    return torch.cat([rows, column[:, None].to(rows.dtype)], dim=1)


def group_logits(
    hidden_aug: torch.Tensor,
    items_aug: torch.Tensor,
    plan: RecePlan,
    rounds: Rounds,
    slots: RoundSlots,
    chunks: range,
    keep_bits: torch.Tensor | None = None,
) -> tuple[Group, torch.Tensor | None]:
    """The logits of chunks ``chunks`` of round q and their masks: pad items, each position's positive, and
    (q > 0) pairs already scored in an earlier round. ``hidden_aug`` and ``items_aug`` are the plain (N, D) and
    (C, D) tensors, or (see ``_inputs``) the hidden states with minus a per-position shift appended and the item
    embeddings with a column of ones, so that the bmm subtracts the shift with no pass of its own. Returns the group
    and, for q > 0, the keep flags (flat uint8 0/1, padded to a multiple of 8), recomputed or unpacked from
    ``keep_bits``."""
    n_group, p_size, i_size, width = len(chunks), plan.pos_per_chunk, plan.items_per_chunk, plan.window
    dim = hidden_aug.shape[1]  # D, or D + 1
    rows = slice(chunks.start * p_size, chunks.stop * p_size)
    span_slots = slice(chunks.start * i_size, (chunks.stop + 2 * plan.n_extra) * i_size)
    pos, span = slots.pos[rows], slots.items[span_slots]  # (G P,), ((G + 2 n_ec) I,)
    pos_hidden = hidden_aug.index_select(0, pos).view(n_group, p_size, dim)  # (G, P, D + 1)
    span_emb = items_aug.index_select(0, span).view(-1, i_size, dim)  # (G + 2 n_ec, I, D + 1)
    logits = torch.bmm(pos_hidden, window_view(span_emb, n_group, width).transpose(1, 2))  # -> (G, P, W)
    # the positive sits at window column (its slot - the window's first slot) when inside the window
    first_slot = (torch.arange(chunks.start, chunks.stop, device=pos.device) * i_size)[:, None]  # (G, 1)
    column = slots.target_slot[rows].view(n_group, p_size) - first_slot  # (G, P)
    inside = ((column >= 0) & (column < width)).view(-1)  # (G P,)
    positive = (torch.arange(n_group * p_size, device=pos.device) * width + column.view(-1))[inside]  # (K,)
    pad = None
    lead = plan.n_extra * i_size
    if span_slots.start < lead or span_slots.stop > lead + plan.num_items:  # only the edge groups hold pad slots
        slot = torch.arange(span_slots.start, span_slots.stop, device=pos.device)
        pad_slot = (slot < lead) | (slot >= lead + plan.num_items)  # ((G + 2 n_ec) I,)
        pad = pad_slot.as_strided((n_group, 1, width), (i_size, 0, 1))
    flags = keep = None
    if slots.q > 0:
        if keep_bits is None:
            flags = kept_after_earlier_rounds(plan, rounds, slots.q, pos, span, n_group)
        else:
            flags = unpack_flags(keep_bits)
        keep = flags[: logits.numel()].view(logits.shape)
    return Group(logits, pos, pos_hidden, span, span_emb, positive, pad, keep), flags


def kept_after_earlier_rounds(
    plan: RecePlan, rounds: Rounds, q: int, pos: torch.Tensor, span: torch.Tensor, n_group: int
) -> torch.Tensor:
    """Flat uint8 of G P W flags in the group's (G, P, W) layout, padded to a multiple of 8: 0 where pair
    (t, j) was scored in a round q' < q, that is |chunk_q'(j) - chunk_q'(t)| <= n_ec, else 1.

    Within one round a window never repeats an item, so this counts each pair once without sorting anything.
    In integers only: |gap| - (n_ec + 1) is negative exactly for a near pair, so the sign bit of the OR of
    these over the earlier rounds says whether any round had the pair.
    """
    assert rounds.pos_chunk is not None and rounds.item_chunk is not None
    p_size, i_size, width = plan.pos_per_chunk, plan.items_per_chunk, plan.window
    numel = n_group * p_size * width
    padded = torch.zeros(-(-numel // 8) * 8, dtype=plan.chunk_dtype, device=pos.device)
    any_near = padded[:numel].view(n_group, p_size, width)  # sign bit set: near in some earlier round
    gap = torch.empty_like(any_near)  # reused by every earlier round
    for earlier in range(q):
        pos_chunk = rounds.pos_chunk[earlier].index_select(0, pos).view(n_group, p_size, 1)  # (G, P, 1)
        item_chunk = rounds.item_chunk[earlier].index_select(0, span)  # ((G + 2 n_ec) I,)
        window_chunk = item_chunk.as_strided((n_group, 1, width), (i_size, 0, 1))  # (G, 1, W), a view
        out = any_near if earlier == 0 else gap
        torch.sub(window_chunk, pos_chunk, out=out).abs_().sub_(plan.n_extra + 1)
        if earlier > 0:
            any_near.bitwise_or_(gap)
    sign = 8 * padded.element_size() - 1
    return padded.bitwise_right_shift_(sign).add_(1).to(torch.uint8)  # -1 (near) or 0 -> keep 0 or 1


class _ReceCrossEntropy(torch.autograd.Function):
    """Per-position RECE loss: log(exp(s_y) + sum_{j in U_t, j != y} exp(s_j)) - s_y, with U_t the candidates.

    The forward streams over groups of chunks keeping only the (N,) log-partition and, for rounds after the
    first, which pairs an earlier round scored, packed to one bit per pair; the backward recomputes each
    group's logits from the saved orders and adds the positive's gradient into the same buffers.

    With several rounds the shifts ride in the bmm (see group_logits): the forward shifts row t by its
    positive's logit s_y, which is in the partition, so a candidate far below it is negligible and one far
    above it (exp overflows) sends the group to an exact max-shifted recomputation; the backward shifts by the
    log-partition minus log of the incoming gradient, which turns the exponential directly into the gradient
    of each logit. With one round the forward shifts by each row's maximum and the backward subtracts.
    """

    @staticmethod
    def forward(ctx, hidden, item_emb, targets, plan: RecePlan, rounds: Rounds):  # noqa: ANN001
        positive = positive_logits(hidden, item_emb, targets)  # (N,)
        hidden_in, items_in = _inputs(hidden, item_emb, -positive, plan)
        shift = positive if _shift_in_bmm(plan) else None
        lse = torch.full((plan.n_positions,), -torch.inf, dtype=hidden.dtype, device=hidden.device)  # (N,)
        packed: list[list[torch.Tensor]] = []  # per round after the first, per group
        for q in range(plan.n_rounds):
            slots = round_slots(rounds, plan, targets, q)
            round_lse = torch.empty(plan.n_chunks, plan.pos_per_chunk, dtype=hidden.dtype, device=hidden.device)
            round_bits = []
            for chunks in _groups(plan):
                group, flags = group_logits(hidden_in, items_in, plan, rounds, slots, chunks)
                round_lse[chunks.start : chunks.stop] = _group_logsumexp(group, shift, chunks.start, plan)
                if flags is not None:
                    round_bits.append(pack_flags(flags))
            if q > 0:
                packed.append(round_bits)
            order = rounds.pos_order[q]  # (N,)
            lse[order] = torch.logaddexp(lse[order], round_lse.view(-1)[: plan.n_positions])  # sorted -> (N,)
        log_partition = torch.logaddexp(positive, lse)  # the positive's own column joins the candidates
        ctx.save_for_backward(hidden, item_emb, targets, positive, log_partition)
        ctx.plan, ctx.rounds, ctx.packed = plan, rounds, packed
        return log_partition - positive

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, positive, log_partition = ctx.saved_tensors
        plan, rounds, packed = ctx.plan, ctx.rounds, ctx.packed
        grads = torch.zeros_like(hidden), torch.zeros_like(item_emb)
        coef = (positive - log_partition).exp_().sub_(1).mul_(grad_loss)  # d loss / d s_pos = softmax_pos - 1
        add_positive_grad(*grads, hidden, item_emb, targets, coef)
        # d loss_t / d s_tj = g_t exp(s_tj - log Z_t): with g_t > 0 the factor joins the shift
        scale = None if bool((grad_loss > 0).all()) else grad_loss
        shift = log_partition if scale is not None else log_partition - grad_loss.log()
        hidden_in, items_in = _inputs(hidden, item_emb, -shift, plan)
        row_shift = None if _shift_in_bmm(plan) else shift  # not in the bmm: subtracted per group
        for q in range(plan.n_rounds):
            slots = round_slots(rounds, plan, targets, q)
            for index, chunks in enumerate(_groups(plan)):
                bits = packed[q - 1][index] if q > 0 else None  # keep flags of round q
                group, _ = group_logits(hidden_in, items_in, plan, rounds, slots, chunks, bits)
                _backward_group(grads, group, plan, chunks, scale, row_shift)
        return grads[0], grads[1], None, None, None


def _backward_group(
    grads: tuple[torch.Tensor, torch.Tensor],
    group: Group,
    plan: RecePlan,
    chunks: range,
    scale: torch.Tensor | None,
    row_shift: torch.Tensor | None,
) -> None:
    """Add one group's share of the gradients: d loss / d s_tj = g_t softmax_tj = exp(logit - shift) (times
    ``scale`` when given), the shift already in the logits unless ``row_shift`` (N,) is given."""
    grad_hidden, grad_items = grads
    n_group, i_size, dim = len(chunks), plan.items_per_chunk, grad_hidden.shape[1]
    if row_shift is not None:
        group.logits.sub_(row_shift.index_select(0, group.pos).view(n_group, -1, 1))
    probs = group.zero_masked_(group.logits.exp_())  # (G, P, W); a pad slot's exp may overflow: zeroed here
    group.zero_pad_rows_(probs, chunks.start * plan.pos_per_chunk, plan.n_positions)
    if scale is not None:
        probs.mul_(scale.index_select(0, group.pos).view(n_group, -1, 1))
    grad_pos = torch.bmm(probs, group.windows[..., :dim])  # (G, P, W) x (G, W, D) -> (G, P, D)
    grad_span = torch.zeros(*group.span_emb.shape[:2], dim, dtype=probs.dtype, device=probs.device)  # (G+2n, I, D)
    pos_hidden = group.pos_hidden[..., :dim]  # (G, P, D), a view
    for k in range(1 + 2 * plan.n_extra):  # windows overlap, so one offset at a time
        columns = probs[:, :, k * i_size : (k + 1) * i_size].transpose(1, 2)  # (G, I, P)
        grad_span[k : k + n_group].baddbmm_(columns, pos_hidden)  # (G, I, P) x (G, P, D)
    grad_hidden.index_add_(0, group.pos, grad_pos.view(-1, dim))  # (G P, D) rows at pos
    grad_items.index_add_(0, group.span, grad_span.view(-1, dim))  # rows at span ids


def _group_logsumexp(group: Group, positive: torch.Tensor | None, first_chunk: int, plan: RecePlan) -> torch.Tensor:
    """(G, P): log sum of exp over the unmasked pairs of each row, -inf for a row with none.

    With ``positive`` given, the logits arrive shifted by the positive's logit; where that overflows (a
    candidate or a pad slot far above the positive), the group is redone with each row's own maximum as the
    shift. Without it, the logits are plain and take that route at once.
    """
    if positive is None:
        logits = group.logits
    else:
        total = group.zero_masked_(group.logits.exp_()).sum(dim=2)  # (G, P); the logits are consumed
        real = plan.n_positions - first_chunk * plan.pos_per_chunk  # rows past it are pad slots
        if bool(torch.isfinite(total.view(-1)[: max(real, 0)]).all()):
            return total.log_().add_(positive.index_select(0, group.pos).view(total.shape))
        dim = group.pos_hidden.shape[2] - 1
        logits = torch.bmm(group.pos_hidden[..., :dim], group.windows[..., :dim].transpose(1, 2))  # unshifted
    if group.pad is not None:  # a pad slot's logit is no candidate's: keep it out of the row's maximum
        logits.masked_fill_(group.pad, -torch.inf)
    top = logits.amax(dim=2, keepdim=True).clamp_(min=torch.finfo(logits.dtype).min)  # finite (G, P, 1)
    total = group.zero_masked_(logits.sub_(top).exp_()).sum(dim=2)  # (G, P)
    return total.log_().add_(top.squeeze(2))


def _shift_in_bmm(plan: RecePlan) -> bool:
    return plan.n_rounds > 1


def _inputs(
    hidden: torch.Tensor, item_emb: torch.Tensor, column: torch.Tensor, plan: RecePlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """The bmm inputs: with several rounds, hidden with ``column`` (N,) appended and the items with ones, so
    every logit comes out plus the column; with one round, the plain tensors (the (C, D + 1) copy would cost
    about what it saves, and one more item table at C = 1e6 is 260 MB of peak)."""
    if not _shift_in_bmm(plan):
        return hidden, item_emb
    ones = torch.ones(item_emb.shape[0], dtype=item_emb.dtype, device=item_emb.device)
    return with_column(hidden, column), with_column(item_emb, ones)


def _groups(plan: RecePlan) -> list[range]:
    return [
        range(c, min(c + plan.chunks_per_group, plan.n_chunks)) for c in range(0, plan.n_chunks, plan.chunks_per_group)
    ]


@register
class ReducedCrossEntropy(Loss):
    name = "rece"
    revision = 2  # streamed groups reworked (one bmm per group, packed flags, shifts in the bmm)
    description = "RECE: CE over candidates found by random-projection buckets, chunks and neighbouring chunks."
    params = (
        ParamSpec("n_buckets", "int | None", None, "Buckets n_b; None: the n_b* formula on each call's N and C."),
        ParamSpec("buckets_per_chunk", "float", 1.0, "alpha_bc = n_b / n_c (1 in every published config)."),
        ParamSpec("n_extra_chunks", "int", 1, "n_ec: neighbouring item chunks scored on each side."),
        ParamSpec("rounds", "int", 1, "r: rounds of fresh random vectors; candidates are their union."),
        ParamSpec("block_mib", "float", 32.0, "Working memory of one streamed group of chunks, in MiB."),
        ParamSpec("generator", "Generator | None", None, "Random generator for the projections (seeding)."),
        ParamSpec("kernel", "str", "auto", KERNEL_HELP),
    )
    label = "RECE"
    abbreviations = {"n_extra_chunks": "n_ec", "rounds": "r", "n_buckets": "n_b"}
    # Batch 256, n_ec 3, r 8 (the paper's best Gowalla configuration has batch 128, n_ec 3, r 8; the same quality
    # came at n_ec 0, r 2 with batch 128 kept): batch to 64, then rounds, then extra chunks, then batch; n_b from
    # the formula throughout.
    ladder = Ladder(
        {"batch_size": 256, "n_extra_chunks": 3, "rounds": 8},
        (
            ("batch_size", (128, 64)),
            ("rounds", (4, 2, 1)),
            ("n_extra_chunks", (2, 1, 0)),
            ("batch_size", (32, 16, 8, 4)),
        ),
    )
    report_rank = 60
    paper_presets = {
        "beeradvocate": {"batch_size": 8, "loss_params": {"n_buckets": 133, "n_extra_chunks": 1, "rounds": 16}},
        "behance": {"batch_size": 32, "loss_params": {"n_buckets": 160, "n_extra_chunks": 1, "rounds": 8}},
        "gowalla": {"batch_size": 128, "loss_params": {"n_buckets": 583, "n_extra_chunks": 3, "rounds": 8}},
        "kindle": {"batch_size": 256, "loss_params": {"n_buckets": 403, "n_extra_chunks": 1, "rounds": 8}},
        # Table 3 (leave-one-out, the gSASRec setup): a wider model with more dropout.
        "beauty": {
            "batch_size": 4096, "dim": 256, "dropout": 0.5,
            "loss_params": {"n_buckets": 907, "n_extra_chunks": 8, "rounds": 64},
        },
    }  # fmt: skip
    paper_results = {
        "kindle": (0.0486, 0.0665, 0.0714, 0.0822, 0.0985),
        "gowalla": (0.0192, 0.0372, 0.0449, 0.0546, 0.0787),
    }

    def __init__(
        self,
        num_items: int,
        n_buckets: int | None = None,
        buckets_per_chunk: float = 1.0,
        n_extra_chunks: int = 1,
        rounds: int = 1,
        block_mib: float = 32.0,
        generator: torch.Generator | None = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__(num_items)
        self.n_buckets = None if n_buckets is None else check_int("n_buckets", n_buckets, minimum=1)
        self.buckets_per_chunk = check_float("buckets_per_chunk", buckets_per_chunk, 0.0, 1e6, low_open=True)
        self.n_extra_chunks = check_int("n_extra_chunks", n_extra_chunks, minimum=0)
        self.rounds = check_int("rounds", rounds, minimum=1)
        self.block_mib = check_float("block_mib", block_mib, 0.0, 1e6, low_open=True)
        self.generator = check_generator(generator)
        self.kernel = check_choice("kernel", kernel, KERNEL_CHOICES)

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
        if use_triton(self.name, self.kernel, hidden.device):
            from rece_bench.kernels.rece_window import rece_window_from

            return rece_window_from(hidden, item_emb, targets, plan, rounds).mean()
        return _ReceCrossEntropy.apply(hidden, item_emb, targets, plan, rounds).mean()

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        plan = self.plan(n_positions, elem_bytes)
        orders = self.rounds * (n_positions + self.num_items) * (8 + 4)  # orders and chunk indices
        slots = 4 * 8 * (self.num_items + 2 * plan.window + n_positions)  # padded orders of one round
        flags = (self.rounds - 1) * plan.n_chunks * plan.pos_per_chunk * plan.window // 8  # packed, for backward
        return orders + slots + flags + 3 * int(self.block_mib * _MIB) + 6 * n_positions * dim * elem_bytes
