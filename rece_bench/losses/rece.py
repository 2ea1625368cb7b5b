"""RECE (Reduced Cross-Entropy, CIKM 2024, Algorithm 1) with the authors' semantics (REFERENCE section 1).

Per round, random vectors bucket the positions and the items (argmax of dot products); both sorted orders are
cut into n_c equal chunks, and chunk i of positions is scored against item chunks i-n_ec .. i+n_ec. The loss
of a position is CE over its candidates (the union over rounds, each counted once) and its positive. Counting a
repeated candidate once is what the authors' -log(k) correction achieves; here it is done by keeping a pair in
the first round whose window holds it, which gives the same value and gradient. Within one round a window never
repeats an item, so the pair (t, j) appears in an earlier round q' exactly when |chunk_q'(j) - chunk_q'(t)| <=
n_ec: no sort, no per-position candidate list. The positive is scored like any candidate, in the first window
that holds it; a position whose positive no window held adds exp(s_y) to its partition on its own.

Memory, beyond the authors: the (r, n_b, C) projections are never held (rows are bucketed in slices);
candidate ids live per chunk as a view of the sorted order; the logits are streamed over groups of item chunks
by a custom autograd function that keeps only per-chunk log-sums and the earlier-round flags packed to one bit
per pair, and recomputes each group in the backward pass.

Launches, for a GPU: everything is laid out item-major. A group of G item chunks is scored against the
overlapping windows of (1 + 2 n_ec) position chunks, a strided view of the gathered positions, in one bmm; the
item side of the gradient is one more bmm, the position side a third whose overlapping rows one index_add_
sums. Pad slots need no mask: a pad item gathers a table row whose extra column puts its logit far below any
other, a pad position a zero row. The exponentials are shifted by each column's maximum, so nothing can
overflow and nothing is read back to the host; no tensor's shape depends on values. With a block that holds a
whole round (a GPU's), one forward+backward of RECE (3, 8) at N 8,192, C 173,511 dispatches about 500 ops.

Shape letters: the common ones and RECE's own (r, n_b, n_c, P, I, V, W, G) as in ``docs/notation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from rece_bench.kernels import KERNEL_CHOICES, KERNEL_HELP, use_triton
from rece_bench.losses.base import (
    Loss,
    LossBatch,
    ParamSpec,
    block_bytes,
    block_mib_param,
    check_block_mib,
    check_choice,
    check_float,
    check_generator,
    check_int,
    register,
)
from rece_bench.losses.cards import Ladder, LossCard, register_card
from rece_bench.losses.precision import accumulate_dtype

_MIB = 1 << 20
_INT16_MAX = 32767
# A bucketing slice's scores take at most a quarter of the block (8 MiB of a CPU's 32 MiB block: faster than
# 32 MiB at 1 and 2 threads on a 2-core Xeon), and at most 384 MiB: with a GPU's 2 GiB block the slices then
# never set the call's peak (at N 8,192, C 173,511, r 8 the streamed groups peak higher), and the catalogue
# still takes only a few slices.
_BUCKET_SHARE = 4
_BUCKET_MAX_BYTES = 384 * _MIB


def default_n_buckets(n_positions: int, num_items: int, n_extra_chunks: int, buckets_per_chunk: float) -> int:
    """n_b* = sqrt(4 alpha_bc (1 + 2 n_ec) min(C, N)), the authors' memory-optimal bucket count (floored)."""
    return max(1, int(math.sqrt(4 * buckets_per_chunk * (1 + 2 * n_extra_chunks) * min(num_items, n_positions))))


def _extra_columns(dtype: torch.dtype) -> int:
    """Columns the tables carry beyond D: the pad bias, and the backward's shift (in two parts, a rounded value
    and its remainder, when one part in the compute dtype would round it: bf16 keeps 8 bits of a shift near 20)."""
    return 2 if torch.finfo(dtype).bits >= 32 else 3


def _pad_logit(dtype: torch.dtype) -> float:
    """The logit of a pad item: far below any real one, yet finite, so that 0 * it stays 0 in a pad row."""
    return torch.finfo(dtype).min / 4


@dataclass(frozen=True)
class RecePlan:
    """The sizes of one call: how positions and items are cut into chunks, and how the work is sliced."""

    n_positions: int
    num_items: int
    n_rounds: int
    n_buckets: int
    n_chunks: int
    n_extra: int
    pos_per_chunk: int  # P
    items_per_chunk: int  # I
    group_chunks: tuple[int, ...]  # G of each round: item chunks per streamed group
    bucket_rows: int  # rows per bucketing slice

    @property
    def width(self) -> int:  # V: the position window of one item chunk
        return (1 + 2 * self.n_extra) * self.pos_per_chunk

    @property
    def window(self) -> int:  # W: the item window of one position chunk
        return (1 + 2 * self.n_extra) * self.items_per_chunk

    @property
    def pos_slots(self) -> int:
        """Position slots of a round: n_ec pad chunks, the sorted positions, pad slots to n_c + 2 n_ec chunks."""
        return (self.n_chunks + 2 * self.n_extra) * self.pos_per_chunk

    @property
    def item_slots(self) -> int:
        """Item slots of a round: the sorted items, then pad slots to n_c chunks."""
        return self.n_chunks * self.items_per_chunk

    @property
    def chunk_dtype(self) -> torch.dtype:
        return torch.int16 if self.n_chunks + 2 * self.n_extra < _INT16_MAX else torch.int32

    @property
    def has_empty_item_chunks(self) -> bool:
        """Whether some item chunk holds pad slots only (fewer items than (n_c - 1) I)."""
        return (self.n_chunks - 1) * self.items_per_chunk >= self.num_items

    def groups(self, q: int) -> list[range]:
        """The item chunks of each streamed group of round q."""
        size = self.group_chunks[q]
        return [range(c, min(c + size, self.n_chunks)) for c in range(0, self.n_chunks, size)]


@dataclass(frozen=True)
class CallShape:
    """The sizes of one call that a plan depends on: positions, items, width and bytes per element."""

    n_positions: int  # N
    num_items: int  # C
    dim: int = 64  # D
    elem_bytes: int = 4


def make_plan(
    shape: CallShape, n_buckets: int, buckets_per_chunk: float, n_extra: int, n_rounds: int, block_bytes: int
) -> RecePlan:
    n_positions, num_items, dim, elem_bytes = shape.n_positions, shape.num_items, shape.dim, shape.elem_bytes
    n_chunks = max(1, round(n_buckets / buckets_per_chunk))
    pos_per_chunk = -(-n_positions // n_chunks)
    items_per_chunk = -(-num_items // n_chunks)
    rounds = range(n_rounds)
    sizes = (pos_per_chunk, items_per_chunk, n_extra, dim, elem_bytes)
    group = tuple(max(1, min(n_chunks, block_bytes // chunk_bytes(*sizes, q))) for q in rounds)
    scores = max(4, elem_bytes) * n_rounds * n_buckets  # bytes of one row's bucketing scores
    bucket_rows = max(1, min(block_bytes // _BUCKET_SHARE, _BUCKET_MAX_BYTES) // scores)
    return RecePlan(
        n_positions, num_items, n_rounds, n_buckets, n_chunks, n_extra, pos_per_chunk, items_per_chunk, group,
        bucket_rows,
    )  # fmt: skip


def chunk_bytes(p_size: int, i_size: int, n_extra: int, dim: int, elem_bytes: int, q: int) -> int:
    """Working memory of one item chunk of a round-q group: per pair, the logits and the flags (in round q > 0
    also the chunk gaps of all q earlier rounds and their minimum, 2 bytes each, and the packing's copies); per
    row, the gathered item rows, their gradient and the window rows' gradient."""
    width = (1 + 2 * n_extra) * p_size
    acc_bytes = max(4, elem_bytes)
    per_pair = elem_bytes + 1 + (2 * (q + 1) + 2 if q > 0 else 0)
    rows = i_size * (dim + 4) * elem_bytes + i_size * dim * acc_bytes + width * (dim + 4) * (elem_bytes + acc_bytes)
    return i_size * width * per_pair + rows


@dataclass(frozen=True)
class Rounds:
    """Per round, the sorted orders of positions and items and the chunk of every position and item."""

    pos_order: torch.Tensor  # (r, N) long
    item_order: torch.Tensor  # (r, C) long
    pos_chunk: torch.Tensor  # (r, N + 1) int16/int32; column N (the pad position) is 0
    item_chunk: torch.Tensor  # (r, C + 1) int16/int32; column C (the pad item) is 0


def assign_buckets(rows: torch.Tensor, proj_t: torch.Tensor, n_rounds: int, slice_rows: int) -> torch.Tensor:
    """(M, r) bucket of every row in every round; rows (M, D), proj_t (D, r n_b); ``slice_rows`` rows at a time."""
    n_rows = rows.shape[0]
    if n_rows <= slice_rows:
        return (rows.to(proj_t.dtype) @ proj_t).view(n_rows, n_rounds, -1).argmax(dim=2)  # (M, r n_b) -> (M, r)
    out = torch.empty(n_rows, n_rounds, dtype=torch.long, device=rows.device)
    for start in range(0, n_rows, slice_rows):
        part = out[start : start + slice_rows]  # (Ms, r)
        scores = rows[start : start + slice_rows].to(proj_t.dtype) @ proj_t  # (Ms, D) x (D, r n_b) -> (Ms, r n_b)
        torch.argmax(scores.view(part.shape[0], n_rounds, -1), dim=2, out=part)
        del scores  # before the next slice's scores exist
    return out


def chunk_index(order: torch.Tensor, per_chunk: int, dtype: torch.dtype) -> torch.Tensor:
    """(r, M + 1): the chunk that row m falls into in round q, from the sorted order (r, M); column M is 0."""
    n_rounds, n_rows = order.shape
    slot_chunk = torch.arange(n_rows, device=order.device).div_(per_chunk, rounding_mode="floor").to(dtype)  # (M,)
    out = torch.zeros(n_rounds, n_rows + 1, dtype=dtype, device=order.device)
    return out.scatter_(1, order, slot_chunk.expand(n_rounds, n_rows))  # out[q, order[q, s]] = s // per_chunk


@torch.no_grad()
def draw_rounds(
    hidden: torch.Tensor, item_emb: torch.Tensor, plan: RecePlan, generator: torch.Generator | None
) -> Rounds:
    """Fresh random vectors (r, n_b, D), shared by positions and items within a round; sort both by bucket.

    The vectors are drawn in the inputs' dtype, float32 at least (reduced-precision inputs are bucketed in float32:
    a bucket is an argmax, and bf16 scores would tie)."""
    shape = (plan.n_rounds, plan.n_buckets, hidden.shape[1])
    dtype = accumulate_dtype(hidden.dtype)
    proj = torch.randn(shape, generator=generator, device=hidden.device, dtype=dtype)
    proj_t = proj.view(-1, shape[2]).T  # (r, n_b, D) -> (D, r n_b)
    pos_order = assign_buckets(hidden, proj_t, plan.n_rounds, plan.bucket_rows).argsort(dim=0, stable=True).T
    item_order = assign_buckets(item_emb, proj_t, plan.n_rounds, plan.bucket_rows).argsort(dim=0, stable=True).T
    pos_chunk = chunk_index(pos_order, plan.pos_per_chunk, plan.chunk_dtype)  # (r, N + 1)
    item_chunk = chunk_index(item_order, plan.items_per_chunk, plan.chunk_dtype)  # (r, C + 1)
    return Rounds(pos_order, item_order, pos_chunk, item_chunk)


@dataclass(frozen=True)
class Slots:
    """Per round, the ids in slot order: positions (pad id N) with n_ec pad chunks before them and enough after
    for the last window, items (pad id C) padded to n_c chunks. Item chunk c is scored against position slots
    c P .. c P + V: position chunks c - n_ec .. c + n_ec."""

    pos: torch.Tensor  # (r, (n_c + 2 n_ec) P) long
    items: torch.Tensor  # (r, n_c I) long


def make_slots(rounds: Rounds, plan: RecePlan) -> Slots:
    lead = plan.n_extra * plan.pos_per_chunk
    pos_tail = plan.pos_slots - lead - plan.n_positions
    pos = F.pad(rounds.pos_order, (lead, pos_tail), value=plan.n_positions)  # (r, N) -> (r, (n_c + 2 n_ec) P)
    items = F.pad(rounds.item_order, (0, plan.item_slots - plan.num_items), value=plan.num_items)  # (r, n_c I)
    return Slots(pos, items)


def item_table(item_emb: torch.Tensor) -> torch.Tensor:
    """(C + 1, D + k): rows [e_j, 0, 1 ...] and a pad row [0, pad logit, 1 ...] (see ``_extra_columns``)."""
    dim, extra = item_emb.shape[1], _extra_columns(item_emb.dtype)
    table = F.pad(item_emb, (0, extra, 0, 1))  # (C, D) -> (C + 1, D + k), zeros added
    table[:, dim + 1 :].fill_(1.0)
    table[-1, dim].fill_(_pad_logit(item_emb.dtype))
    return table


def forward_rows(hidden: torch.Tensor) -> torch.Tensor:
    """(N + 1, D + k): rows [h_t, 1, 0 ...] and a zero pad row; against ``item_table`` a pad item scores the pad
    logit, a pad position 0."""
    extra = _extra_columns(hidden.dtype)
    return F.pad(F.pad(hidden, (0, 1), value=1.0), (0, extra - 1, 0, 1))  # (N, D) -> (N + 1, D + k)


def backward_rows(hidden: torch.Tensor, log_partition: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(N + 1, 2 D + k): rows [h_t, 1, -log Z_t (rounded, remainder), scale_t h_t] and a zero pad row. Against
    ``item_table`` the first D + k columns give s_tj - log Z_t, whose exponential is the softmax weight; the last
    D carry each row's share of the item-side gradient."""
    dtype = hidden.dtype
    shift = log_partition.to(dtype)  # (N,)
    parts = [F.pad(hidden, (0, 1), value=1.0), shift.neg().unsqueeze(1)]  # (N, D + 1), (N, 1)
    if _extra_columns(dtype) == 3:
        parts.append((log_partition - shift.to(log_partition.dtype)).to(dtype).neg_().unsqueeze(1))  # remainder
    parts.append(hidden * scale.to(dtype).unsqueeze(1))  # (N, D) * (N, 1)
    return F.pad(torch.cat(parts, dim=1), (0, 0, 0, 1))  # (N + 1, 2 D + k)


def scored_before(
    plan: RecePlan, rounds: Rounds, q: int, item_ids: torch.Tensor, pos_ids: torch.Tensor
) -> torch.Tensor:
    """(G, I, V) bool, True where a round q' < q scored pair (item slot, window slot) of a round-q group, that
    is |chunk_q'(j) - chunk_q'(t)| <= n_ec for some q' < q. ``item_ids`` (G I,) and ``pos_ids`` ((G + 2 n_ec) P,)
    are the group's.

    All q earlier rounds at once: their gaps form one (q, G, I, V) integer tensor (``chunk_bytes`` counts it).
    The chunk indices are gathered for all r rounds (a few bytes per id) and the first q viewed.
    """
    i_size, p_size, width = plan.items_per_chunk, plan.pos_per_chunk, plan.width
    n_group, n_items, n_pos = item_ids.shape[0] // i_size, item_ids.shape[0], pos_ids.shape[0]
    item_chunk = rounds.item_chunk.index_select(1, item_ids)  # (r, G I)
    item_chunk = item_chunk.as_strided((q, n_group, i_size, 1), (n_items, i_size, 1, 0))  # (q, G, I, 1) view
    pos_chunk = rounds.pos_chunk.index_select(1, pos_ids)  # (r, (G + 2 n_ec) P)
    window = pos_chunk.as_strided((q, n_group, 1, width), (n_pos, p_size, 0, 1))  # (q, G, 1, V) view
    gap = torch.sub(item_chunk, window).abs_()  # (q, G, I, V)
    closest = gap.amin(dim=0)  # (G, I, V)
    del gap  # the largest tensor of the call at a GPU's block: gone before the flags are made
    return closest.le(plan.n_extra)


def positive_in_windows(plan: RecePlan, rounds: Rounds, targets: torch.Tensor) -> torch.Tensor:
    """(N,) bool: whether some round's window held the position's positive."""
    target_chunk = rounds.item_chunk.index_select(1, targets)  # (r, N)
    gap = torch.sub(target_chunk, rounds.pos_chunk[:, : plan.n_positions]).abs_()  # (r, N)
    return gap.amin(dim=0).le(plan.n_extra)


def _bit_shifts(device: torch.device) -> torch.Tensor:
    return torch.arange(8, dtype=torch.uint8, device=device)


def pack_flags(flags: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Contiguous bool or uint8 0/1 flags (n,) (any shape) as uint8 (ceil(n / 8),): flag 8 k + i is bit i of
    byte k; the last byte's unused bits are 0."""
    flat = flags.view(-1)
    if flat.shape[0] % 8:
        flat = F.pad(flat, (0, 8 - flat.shape[0] % 8))
    shifts = _bit_shifts(flags.device) if shifts is None else shifts
    return flat.view(-1, 8).bitwise_left_shift(shifts).sum(dim=1, dtype=torch.uint8)  # (n / 8, 8) -> (n / 8,)


def _bit_masks(device: torch.device) -> torch.Tensor:
    """(8,) uint8: 1, 2, 4, ..., 128 (made on the device: no copy from the host)."""
    return torch.ones(8, dtype=torch.uint8, device=device).bitwise_left_shift_(_bit_shifts(device))


def unpack_mask(bits: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """The inverse of pack_flags as a bool mask: uint8 (n,) -> bool (8 n,)."""
    masks = _bit_masks(bits.device) if masks is None else masks
    return bits.unsqueeze(1).bitwise_and(masks).ne(0).view(-1)  # (n, 1) & (8,) -> (n, 8) -> (8 n,)


def unpack_flags(bits: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_flags: uint8 (n,) -> uint8 0/1 (8 n,)."""
    return unpack_mask(bits).view(torch.uint8)


@dataclass(frozen=True)
class Group:
    """One streamed group of round q: item chunks ``chunks``, their ids, and the position slots they see."""

    q: int
    chunks: range
    item_ids: torch.Tensor  # (G I,) long
    pos_ids: torch.Tensor  # ((G + 2 n_ec) P,) long


def round_groups(plan: RecePlan, slots: Slots) -> list[Group]:
    """Every streamed group of every round, in order."""
    out = []
    for q, (pos, items) in enumerate(zip(slots.pos.unbind(0), slots.items.unbind(0), strict=True)):
        for chunks in plan.groups(q):
            item_ids = _part(items, chunks.start * plan.items_per_chunk, chunks.stop * plan.items_per_chunk)
            pos_ids = _part(
                pos, chunks.start * plan.pos_per_chunk, (chunks.stop + 2 * plan.n_extra) * plan.pos_per_chunk
            )
            out.append(Group(q, chunks, item_ids, pos_ids))
    return out


def _part(ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """ids[start:stop], or ids itself when that is all of it (no op dispatched)."""
    return ids if (start, stop) == (0, ids.shape[0]) else ids[start:stop]


def window_logits(
    items: torch.Tensor, rows: torch.Tensor, group: Group, plan: RecePlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G, I, V) logits of the group's items against their position windows, the gathered item rows
    (G, I, D + k) and position rows ((G + 2 n_ec) P, .). ``items`` is ``item_table``; ``rows`` is ``forward_rows``
    or ``backward_rows``, whose first D + k columns enter the product (the position windows are an overlapping
    strided view of the gathered rows: no copy)."""
    i_size, p_size, width = plan.items_per_chunk, plan.pos_per_chunk, plan.width
    n_group, cols = len(group.chunks), items.shape[1]
    span = items.index_select(0, group.item_ids).view(n_group, i_size, cols)  # (G I, D + k) -> (G, I, D + k)
    pos = rows.index_select(0, group.pos_ids)  # ((G + 2 n_ec) P, D + k or 2 D + k)
    row = pos.shape[1]
    windows = pos.as_strided((n_group, cols, width), (p_size * row, 1, row))  # (G, D + k, V), a view
    return torch.bmm(span, windows), span, pos  # (G, I, D + k) x (G, D + k, V) -> (G, I, V)


def group_log_sums(
    items: torch.Tensor, rows: torch.Tensor, group: Group, plan: RecePlan, seen: torch.Tensor | None, out: torch.Tensor
) -> None:
    """out (G, 1, V) <- for each window column (one position slot against one item chunk of the group): the log
    of the sum of exp over its pairs not ``seen`` in an earlier round ((G, I, V) bool, None: none), -inf for
    none.

    The shift is the column's maximum, so no exponential overflows whatever the logits. A masked pair (scored in
    an earlier round) may set it: it is in the position's partition, so what it pushes below the float range is
    negligible there. A pad item never does, its logit being far below (``_pad_logit``), unless a whole chunk is
    pad slots; then the maximum is clamped so that those slots still add 0.
    """
    logits, _, _ = window_logits(items, rows, group, plan)
    top = logits.amax(dim=1, keepdim=True)  # (G, 1, V)
    if plan.has_empty_item_chunks:
        top.clamp_(min=_pad_logit(logits.dtype) / 2)
    logits.sub_(top).exp_()
    if seen is not None:
        logits.masked_fill_(seen, 0.0)  # not a product by the flags: a CPU would copy them to floats first
    total = logits.sum(dim=1, keepdim=True, dtype=out.dtype)  # (G, I, V) -> (G, 1, V)
    torch.add(total.log_(), top.to(out.dtype), out=out)


@dataclass(frozen=True)
class Grads:
    """The backward's buffers, in the accumulate dtype: per position slot (pad row N), sum_j p_tj times the item
    row [e_j, ...]; per item (pad row C), sum_t p_tj scale_t h_t; and ``norm``, by which the item side's rows were
    divided in reduced precision (None: not scaled)."""

    rows: torch.Tensor  # (N + 1, D + k)
    items: torch.Tensor  # (C + 1, D)
    norm: torch.Tensor | None  # () or None

    def item_rows(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.to(self.items.dtype)
        return grad if self.norm is None else grad.mul_(self.norm)


def group_backward(
    items: torch.Tensor, rows: torch.Tensor, group: Group, plan: RecePlan, seen: torch.Tensor | None, grads: Grads
) -> None:
    """Add one group's share of the gradients: the softmax weights come straight out of the product (the rows
    carry -log Z_t), then one bmm for the items and one for the positions, whose overlapping windows index_add_
    sums into their slots."""
    probs, span, pos = window_logits(items, rows, group, plan)
    probs.exp_()  # (G, I, V): p_tj
    if seen is not None:
        probs.masked_fill_(seen, 0.0)
    n_group, cols, dim, row = len(group.chunks), span.shape[2], grads.items.shape[1], pos.shape[1]
    scaled = pos.as_strided((n_group, plan.width, dim), (plan.pos_per_chunk * row, row, 1), cols)  # (G, V, D) view
    grad_span = torch.bmm(probs, scaled)  # (G, I, V) x (G, V, D) -> (G, I, D)
    grads.items.index_add_(0, group.item_ids, grads.item_rows(grad_span.view(-1, dim)))  # (G I, D) at item ids
    grad_windows = torch.bmm(probs.transpose(1, 2), span)  # (G, V, I) x (G, I, D + k) -> (G, V, D + k)
    window_ids = group.pos_ids.unfold(0, plan.width, plan.pos_per_chunk).reshape(-1)  # (G, V) -> (G V,)
    grads.rows.index_add_(0, window_ids, grad_windows.view(-1, cols).to(grads.rows.dtype))  # (G V, D + k)


def log_partition_of(
    plan: RecePlan, rounds: Rounds, sums: torch.Tensor, positive: torch.Tensor, appeared: torch.Tensor
) -> torch.Tensor:
    """(N,) log Z_t from the window columns ``sums`` (r, n_c + 2 n_ec, 1, V) (item chunk c at row n_ec + c, pad
    rows -inf): position chunk c met item chunks c - n_ec + k at rows c + k, column offset (2 n_ec - k) P, for
    k = 0 .. 2 n_ec, a strided view; then the rounds, and exp(s_y) where no window held the positive."""
    n_rounds, n_rows, _, width = sums.shape
    p_size, n_extra, n_positions = plan.pos_per_chunk, plan.n_extra, plan.n_positions
    shape, strides = (n_rounds, plan.n_chunks, 1 + 2 * n_extra, p_size), (n_rows * width, width, width - p_size, 1)
    per_slot = torch.logsumexp(sums.as_strided(shape, strides, 2 * n_extra * p_size), dim=2)  # (r, n_c, P)
    per_slot = per_slot.view(n_rounds, -1)  # (r, n_c P) in each round's sorted order
    if per_slot.shape[1] != n_positions:
        per_slot = per_slot[:, :n_positions]  # (r, N)
    per_round = torch.empty_like(per_slot).scatter_(1, rounds.pos_order, per_slot)  # (r, N) by position
    return torch.logaddexp(torch.logsumexp(per_round, dim=0), positive.masked_fill(appeared, -torch.inf))


class _ReceCrossEntropy(torch.autograd.Function):
    """Per-position RECE loss: log(exp(s_y) + sum_{j in U_t, j != y} exp(s_j)) - s_y, with U_t the candidates.

    The forward streams over groups of item chunks keeping the window columns' log-sums and, for rounds after
    the first, which pairs an earlier round scored, packed to one bit per pair; the backward recomputes each
    group's logits with -log Z_t riding in the product, so their exponentials are the softmax weights.
    """

    @staticmethod
    def forward(ctx, hidden, item_emb, targets, plan: RecePlan, rounds: Rounds):  # noqa: ANN001
        acc = accumulate_dtype(hidden.dtype)
        positive = (hidden.to(acc) * item_emb.index_select(0, targets).to(acc)).sum(dim=1)  # (N, D) -> (N,)
        slots, items, rows = make_slots(rounds, plan), item_table(item_emb), forward_rows(hidden)
        shape = (plan.n_rounds, plan.n_chunks + 2 * plan.n_extra, 1, plan.width)
        sums = torch.full(shape, -torch.inf, dtype=acc, device=hidden.device)
        per_round, shifts, packed = sums.unbind(0), _bit_shifts(hidden.device), []
        for group in round_groups(plan, slots):
            seen = None
            if group.q > 0:
                seen = scored_before(plan, rounds, group.q, group.item_ids, group.pos_ids)
                packed.append(pack_flags(seen, shifts))
            start = plan.n_extra + group.chunks.start
            group_log_sums(items, rows, group, plan, seen, per_round[group.q][start : start + len(group.chunks)])
        appeared = positive_in_windows(plan, rounds, targets)  # (N,)
        log_partition = log_partition_of(plan, rounds, sums, positive, appeared)
        ctx.save_for_backward(hidden, item_emb, targets, positive, log_partition, appeared)
        ctx.plan, ctx.rounds, ctx.slots, ctx.items, ctx.packed = plan, rounds, slots, items, packed
        return log_partition - positive

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, positive, log_partition, appeared = ctx.saved_tensors
        plan, acc = ctx.plan, log_partition.dtype
        grad = grad_loss.to(acc)  # (N,)
        scale, norm = grad, None
        if hidden.dtype != acc:  # reduced precision: the item side's rows scaled to at most 1 in magnitude
            norm = grad.abs().amax().clamp_(min=torch.finfo(acc).tiny)
            scale = grad / norm
        rows = backward_rows(hidden, log_partition, scale)
        n, dim, extra = hidden.shape[0], hidden.shape[1], _extra_columns(hidden.dtype)
        grads = Grads(
            torch.zeros(n + 1, dim + extra, dtype=acc, device=hidden.device),
            torch.zeros(item_emb.shape[0] + 1, dim, dtype=acc, device=hidden.device),
            norm,
        )
        masks, packed = _bit_masks(hidden.device), iter(ctx.packed)
        for group in round_groups(plan, ctx.slots):
            seen = None
            if group.q > 0:
                shape = (len(group.chunks), plan.items_per_chunk, plan.width)
                seen = _part(unpack_mask(next(packed), masks), 0, math.prod(shape)).view(shape)
            group_backward(ctx.items, rows, group, plan, seen, grads)
        grad_hidden, grad_items = finish_grads(
            grads, hidden, item_emb, targets, positive, log_partition, appeared, grad
        )
        return grad_hidden, grad_items, None, None, None


def finish_grads(
    grads: Grads,
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    positive: torch.Tensor,
    log_partition: torch.Tensor,
    appeared: torch.Tensor,
    grad: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients in the inputs' dtypes: the streamed sums scaled by the incoming gradient, plus the positive's
    share, d loss_t / d s_y = -1 plus its softmax weight where no window held it (a held one got it there)."""
    n, dim = hidden.shape
    acc = grad.dtype
    coef = torch.sub(positive, log_partition).exp_().masked_fill_(appeared, 0.0).sub_(1.0).mul_(grad)  # (N,)
    grad_hidden = grads.rows[:n, :dim] * grad.unsqueeze(1)  # (N, D) * (N, 1)
    grad_hidden.addcmul_(coef.unsqueeze(1), item_emb.index_select(0, targets).to(acc))  # (N, 1) * (N, D)
    grad_items = grads.items[: item_emb.shape[0]]  # (C, D) view
    grad_items.index_add_(0, targets, coef.unsqueeze(1) * hidden.to(acc))  # (N, D) rows at the targets
    return grad_hidden.to(hidden.dtype), grad_items.to(item_emb.dtype)


@register
class ReducedCrossEntropy(Loss):
    name = "rece"
    revision = 3  # item-major groups, a whole round per group on a GPU's block, no host synchronisation
    description = "RECE: CE over candidates found by random-projection buckets, chunks and neighbouring chunks."
    params = (
        ParamSpec("n_buckets", "int | None", None, "Buckets n_b; None: the n_b* formula on each call's N and C."),
        ParamSpec("buckets_per_chunk", "float", 1.0, "alpha_bc = n_b / n_c (1 in every published config)."),
        ParamSpec("n_extra_chunks", "int", 1, "n_ec: neighbouring item chunks scored on each side."),
        ParamSpec("rounds", "int", 1, "r: rounds of fresh random vectors; candidates are their union."),
        block_mib_param("one streamed group of item chunks"),
        ParamSpec("generator", "Generator | None", None, "Random generator for the projections (seeding)."),
        ParamSpec("kernel", "str", "auto", KERNEL_HELP),
    )

    def __init__(
        self,
        num_items: int,
        n_buckets: int | None = None,
        buckets_per_chunk: float = 1.0,
        n_extra_chunks: int = 1,
        rounds: int = 1,
        block_mib: float | None = None,
        generator: torch.Generator | None = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__(num_items)
        self.n_buckets = None if n_buckets is None else check_int("n_buckets", n_buckets, minimum=1)
        self.buckets_per_chunk = check_float("buckets_per_chunk", buckets_per_chunk, 0.0, 1e6, low_open=True)
        self.n_extra_chunks = check_int("n_extra_chunks", n_extra_chunks, minimum=0)
        self.rounds = check_int("rounds", rounds, minimum=1)
        self.block_mib = check_block_mib(block_mib)
        self.generator = check_generator(generator)
        self.kernel = check_choice("kernel", kernel, KERNEL_CHOICES)

    def plan(
        self, n_positions: int, elem_bytes: int = 4, dim: int = 64, device: torch.device | str | None = None
    ) -> RecePlan:
        n_buckets = self.n_buckets or default_n_buckets(
            n_positions, self.num_items, self.n_extra_chunks, self.buckets_per_chunk
        )
        shape = CallShape(n_positions, self.num_items, dim, elem_bytes)
        block = block_bytes(self.block_mib, device)
        return make_plan(shape, n_buckets, self.buckets_per_chunk, self.n_extra_chunks, self.rounds, block)

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        plan = self.plan(hidden.shape[0], hidden.element_size(), hidden.shape[1], hidden.device)
        rounds = draw_rounds(hidden, item_emb, plan, self.generator)
        if use_triton(self.name, self.kernel, hidden.device):
            from rece_bench.kernels.rece_window import rece_window_from

            n_positions, num_items = hidden.shape[0], item_emb.shape[0]
            tables = {"pos_chunk": rounds.pos_chunk[:, :n_positions], "item_chunk": rounds.item_chunk[:, :num_items]}
            return rece_window_from(hidden, item_emb, targets, plan, replace(rounds, **tables)).mean()  # (r, N), (r, C)
        return _ReceCrossEntropy.apply(hidden, item_emb, targets, plan, rounds).mean()

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        """Beyond the inputs and their gradients: the orders, chunk indices and slots of every round, the two
        tables, the window columns' log-sums, the packed flags, then the larger of one streamed group and one
        bucketing slice, and the accumulate-dtype buffers."""
        plan = self.plan(n_positions, elem_bytes, dim)
        n_rounds, num_items, acc = self.rounds, self.num_items, max(4, elem_bytes)
        index = 2 if plan.chunk_dtype == torch.int16 else 4
        orders = n_rounds * ((n_positions + num_items) * (16 + index) + (plan.pos_slots + plan.item_slots) * 8)
        tables = (num_items + 1) * (dim + 4) * elem_bytes + (n_positions + 1) * (2 * dim + 4) * (elem_bytes + acc)
        sums = n_rounds * (plan.n_chunks + 2 * plan.n_extra) * plan.width * acc
        flags = (n_rounds - 1) * plan.item_slots * plan.width // 8
        sizes = (plan.pos_per_chunk, plan.items_per_chunk, plan.n_extra, dim, elem_bytes)
        group = max(size * chunk_bytes(*sizes, q) for q, size in enumerate(plan.group_chunks))
        buckets = plan.bucket_rows * n_rounds * plan.n_buckets * acc
        wider = (num_items + n_positions) * dim * acc if acc > elem_bytes else 0  # float32 gradient buffers
        return orders + tables + sums + flags + max(group, buckets) + wider + 4 * n_positions * dim * acc


register_card(
    LossCard(
        name="rece",
        label="RECE",
        abbreviations={"n_extra_chunks": "n_ec", "rounds": "r", "n_buckets": "n_b"},
        # Batch 256, n_ec 3, r 8 (the paper's best Gowalla configuration has batch 128, n_ec 3, r 8; the same quality
        # came at n_ec 0, r 2 with batch 128 kept): batch to 64, then rounds, then extra chunks, then batch; n_b from
        # the formula throughout.
        ladder=Ladder(
            {"batch_size": 256, "n_extra_chunks": 3, "rounds": 8},
            (
                ("batch_size", (128, 64)),
                ("rounds", (4, 2, 1)),
                ("n_extra_chunks", (2, 1, 0)),
                ("batch_size", (32, 16, 8, 4)),
            ),
        ),
        report_rank=60,
        paper_presets={
            "beeradvocate": {"batch_size": 8, "loss_params": {"n_buckets": 133, "n_extra_chunks": 1, "rounds": 16}},
            "behance": {"batch_size": 32, "loss_params": {"n_buckets": 160, "n_extra_chunks": 1, "rounds": 8}},
            "gowalla": {"batch_size": 128, "loss_params": {"n_buckets": 583, "n_extra_chunks": 3, "rounds": 8}},
            "kindle": {"batch_size": 256, "loss_params": {"n_buckets": 403, "n_extra_chunks": 1, "rounds": 8}},
            # Table 3 (leave-one-out, the gSASRec setup): a wider model with more dropout.
            "beauty": {
                "batch_size": 4096,
                "dim": 256,
                "dropout": 0.5,
                "loss_params": {"n_buckets": 907, "n_extra_chunks": 8, "rounds": 64},
            },
        },
        paper_results={
            "kindle": (0.0486, 0.0665, 0.0714, 0.0822, 0.0985),
            "gowalla": (0.0192, 0.0372, 0.0449, 0.0546, 0.0787),
        },
    )
)
