"""Negative samplers shared by the sampled losses, vectorised on the device (no per-user Python loops).

Without replacement, excluding a user's items: draw ranks among the items the user has not seen, fix the
duplicates by redrawing them (the procedure treats every item alike, so each k-subset is equally likely), then
map a rank to its item id by skipping the user's sorted seen ids. Rows whose draw is dense (k above half the
allowed items) use random keys and top-k instead, where redrawing would crawl.

Per-row work is done on flat arrays: a row's values are offset by row x (a bound above every value), so one 1-D
sort orders every row at once and one 1-D search serves every row. On this project's 2-core CPU the 1-D int64
sort of a (2,700, 256) block of ranks took 4.2 ms where the row-wise sort took 10.2 ms (torch 2.13).
"""

from __future__ import annotations

import torch

from rece_bench.errors import UserError
from rece_bench.losses.precision import (
    accumulate_dtype,
    accumulate_size,
    amp_backward,
    amp_forward,
    matmul_acc,
    to_accumulate,
)

_NO_ID = 2**62  # sentinel for padded or repeated seen ids: sorts last and is never <= a rank
_MAX_REDRAWS = 64
_DENSE_KEYS_PER_SLICE = 1 << 24


def sample_uniform(
    n_rows: int, n_negatives: int, num_items: int, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """(R, K) ids drawn uniformly with replacement from the whole catalogue (gBCE)."""
    return torch.randint(0, num_items, (n_rows, n_negatives), device=device, generator=generator)


def sample_excluding(
    seen_items: torch.Tensor,
    row_seq: torch.Tensor,
    n_negatives: int,
    num_items: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(R, K) distinct ids per row, uniform without replacement, none of them seen by the row's user.

    ``row_seq`` (R,) names the sequence (row of ``seen_items`` (B, S)) whose user each output row serves.
    """
    skip, n_seen = seen_skip_table(seen_items)  # (B, S), (B,)
    allowed = num_items - n_seen  # (B,)
    fewest = int(allowed.min())
    if n_negatives > fewest:
        raise UserError(
            f"n_negatives={n_negatives} exceeds the {fewest} items some user has not seen: "
            f"choose n_negatives <= {fewest}"
        )
    high = allowed[row_seq]  # (B,) -> (R,)
    ranks = sample_distinct_ranks(high, n_negatives, generator)  # (R, K)
    return ranks + _skips_at_or_below(skip, row_seq, ranks, num_items)  # (R, K)


def _skips_at_or_below(skip: torch.Tensor, row_seq: torch.Tensor, ranks: torch.Tensor, bound: int) -> torch.Tensor:
    """(R, K): #{i : skip[row_seq[r], i] <= ranks[r, k]}, by one search in the flattened (B, S) table.

    Sequence b's entries are offset by b (bound + 1) (pads, above every rank, become bound), so the flat table is
    sorted as a whole and a query offset the same way counts all earlier sequences' entries, then its own; the
    earlier ones are subtracted. No (R, S) copy of the table is made.
    """
    n_seqs, width = skip.shape
    stride = bound + 1
    flat = (skip.clamp(max=bound) + torch.arange(n_seqs, device=skip.device)[:, None] * stride).view(-1)  # (B S,)
    queries = ranks + (row_seq * stride)[:, None]  # (R, K)
    return torch.searchsorted(flat, queries, right=True).sub_((row_seq * width)[:, None])


def seen_skip_table(seen_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: sorted distinct seen ids minus their rank (B, S), and the count of distinct ids (B,).

    With u_i = s_i - i over the sorted distinct seen ids s, the r-th unseen item is r + #{i : u_i <= r}.
    """
    ids, _ = seen_items.sort(dim=1)  # (B, S), the -1 pads first
    repeated = torch.zeros_like(ids, dtype=torch.bool)
    repeated[:, 1:] = ids[:, 1:] == ids[:, :-1]
    keep = (ids >= 0) & ~repeated
    ids = torch.where(keep, ids, torch.full_like(ids, _NO_ID)).sort(dim=1).values  # (B, S), distinct ids first
    n_seen = keep.sum(dim=1)  # (B,)
    rank = torch.arange(ids.shape[1], device=ids.device)  # (S,)
    skip = torch.where(ids < _NO_ID, ids - rank, ids)  # (B, S)
    return skip, n_seen


def sample_distinct_ranks(high: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """(R, K) long: K distinct values per row r, uniform in [0, high[r]); rows from the redraw path come sorted."""
    dense = 2 * k > high  # (R,)
    dense_rows = dense.nonzero().squeeze(1)
    if not dense_rows.numel():  # the usual case: redraw every row in place, no (R, K) gather or scatter
        ranks, dense_rows = _redraw_duplicates(high, k, generator)
    else:
        ranks = torch.empty(high.shape[0], k, dtype=torch.long, device=high.device)
        sparse_rows = (~dense).nonzero().squeeze(1)
        if sparse_rows.numel():
            ranks[sparse_rows], left = _redraw_duplicates(high[sparse_rows], k, generator)
            dense_rows = torch.cat([dense_rows, sparse_rows[left]])
    if dense_rows.numel():
        ranks[dense_rows] = _dense_draw(high[dense_rows], k, generator)
    return ranks


def _uniform_below(high: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One uniform integer in [0, high) per element of ``high``."""
    u = torch.rand(high.shape, device=high.device, generator=generator, dtype=torch.float64)
    return (u * high).long().clamp_(max=high - 1)


def _redraw_duplicates(
    high: torch.Tensor, k: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw with replacement, then redraw repeated values until every row is distinct.

    Returns the (R, K) draws (each row sorted) and the rows (indices) still holding repeats after the last redraw.
    The first pass works on every row in place; later passes gather only the rows that had a repeat.
    """
    high_rk = high[:, None].expand(-1, k)  # (R,) -> (R, K)
    bound = int(high.max())
    ranks = _sort_rows(_uniform_below(high_rk, generator), bound)  # (R, K)
    block, active = ranks, None  # active None: the block is every row
    for _ in range(_MAX_REDRAWS):
        repeat = torch.zeros_like(block, dtype=torch.bool)
        repeat[:, 1:] = block[:, 1:] == block[:, :-1]
        has_repeat = repeat.any(dim=1)  # (A,)
        if active is not None:
            ranks[active] = block
        if not bool(has_repeat.any()):
            return ranks, torch.zeros(0, dtype=torch.long, device=high.device)
        rows = has_repeat.nonzero().squeeze(1)
        active = rows if active is None else active[rows]
        block, repeat = block[rows], repeat[rows]
        block[repeat] = _uniform_below(high[active][:, None].expand_as(block)[repeat], generator)
        block = _sort_rows(block, bound)
    ranks[active] = block
    return ranks, active


def _sort_rows(values: torch.Tensor, bound: int) -> torch.Tensor:
    """(A, K) long values in [0, bound), each row sorted ascending, by one 1-D sort of row-offset keys."""
    offsets = torch.arange(values.shape[0], device=values.device)[:, None] * bound  # (A, 1)
    keys = values.add(offsets).view(-1).sort().values  # row a's keys lie in [a bound, (a + 1) bound)
    return keys.view(values.shape).sub_(offsets)


def _dense_draw(high: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random keys over [0, max(high)), keys at or past a row's bound pushed last, K smallest kept."""
    width = int(high.max())
    rows_per_slice = max(1, _DENSE_KEYS_PER_SLICE // width)
    out = []
    for start in range(0, high.shape[0], rows_per_slice):
        bound = high[start : start + rows_per_slice, None]  # (R', 1)
        keys = torch.rand(bound.shape[0], width, device=high.device, generator=generator)  # (R', W)
        keys.masked_fill_(torch.arange(width, device=high.device) >= bound, 2.0)
        out.append(keys.topk(k, dim=1, largest=False).indices)  # (R', K)
    return torch.cat(out)


class _GatheredLogits(torch.autograd.Function):
    """logits[t, k] = <h_t, e_{ids[t, k]}>, a block of rows at a time, the (N, K, D) gather never kept.

    The products run in the inputs' dtype; the logits come out in its accumulate dtype (float32 for bf16 and
    fp16), so the losses' softplus, log-sum-exp and sums over them run in float32. The item gradient is gathered
    in a float32 buffer (many positions add into one row) and cast to the input's dtype once.
    """

    @staticmethod
    @amp_forward
    def forward(ctx, hidden: torch.Tensor, item_emb: torch.Tensor, ids: torch.Tensor, rows: int) -> torch.Tensor:
        out = torch.empty(ids.shape, dtype=accumulate_dtype(hidden.dtype), device=hidden.device)  # (N, K)
        for start in range(0, ids.shape[0], rows):
            stop = start + rows
            block = ids[start:stop]  # (Nb, K)
            emb = item_emb.index_select(0, block.reshape(-1)).view(*block.shape, -1)  # (Nb, K, D)
            out[start:stop] = torch.bmm(emb, hidden[start:stop, :, None])[:, :, 0]  # (Nb, K, D) x (Nb, D, 1)
        ctx.save_for_backward(hidden, item_emb, ids)
        ctx.rows = rows
        return out

    @staticmethod
    @amp_backward
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        hidden, item_emb, ids = ctx.saved_tensors
        acc = accumulate_dtype(hidden.dtype)
        grad_out = grad_out.to(acc)
        grad_hidden = torch.empty(hidden.shape, dtype=acc, device=hidden.device)
        grad_items = torch.zeros(item_emb.shape, dtype=acc, device=item_emb.device)
        for start in range(0, ids.shape[0], ctx.rows):
            stop = start + ctx.rows
            block_ids, grad = ids[start:stop], grad_out[start:stop]  # (Nb, K)
            emb = item_emb.index_select(0, block_ids.reshape(-1)).view(*block_ids.shape, -1)  # (Nb, K, D)
            grad_hidden[start:stop] = matmul_acc(grad[:, None, :], emb)[:, 0]  # (Nb, 1, K) x (Nb, K, D)
            rows = hidden[start:stop, None, :].to(acc)  # (Nb, 1, D)
            per_pair = grad[:, :, None] * rows  # (Nb, K, 1) * (Nb, 1, D) -> (Nb, K, D)
            grad_items.index_add_(0, block_ids.reshape(-1), per_pair.reshape(-1, hidden.shape[1]))  # (Nb K, D)
        return grad_hidden.to(hidden.dtype), grad_items.to(item_emb.dtype), None, None


def gathered_logits(
    hidden: torch.Tensor, item_emb: torch.Tensor, ids: torch.Tensor, block_bytes: int = 32 << 20
) -> torch.Tensor:
    """(N, K) scores of each position against its own K items, hidden (N, D), item_emb (C, D), ids (N, K), in
    the accumulate dtype of the inputs' (float32 for bf16 and fp16)."""
    per_row = max(1, ids.shape[1] * hidden.shape[1] * accumulate_size(hidden.dtype))  # a block's (Nb, K, D) grads
    return _GatheredLogits.apply(hidden, item_emb, ids, max(1, block_bytes // per_row))


def scored_with_positive(
    hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """(N, 1 + K) scores of [target, negatives...] per position, through one gathered function so that the
    positive and the negatives share one (C, D) gradient buffer."""
    ids = torch.cat([targets[:, None], negatives], dim=1)  # (N,), (N, K) -> (N, 1 + K)
    return gathered_logits(hidden, item_emb, ids)


def positive_logits(
    hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, accumulate: bool = False
) -> torch.Tensor:
    """(N,) score of each position's target item: in the inputs' dtype, or with ``accumulate`` in its accumulate
    dtype (float32 for bf16 and fp16; what the streaming losses add their log-sum-exps to)."""
    if accumulate:
        hidden, item_emb = to_accumulate(hidden), to_accumulate(item_emb)
    return (hidden * item_emb[targets]).sum(dim=1)  # (N, D) * (N, D) -> (N,)


def add_positive_grad(
    grad_hidden: torch.Tensor,
    grad_items: torch.Tensor,
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    coef: torch.Tensor,
) -> None:
    """Add d/d(h, E) of sum_t coef_t <h_t, e_{y_t}> into the gradients in place (no second (C, D) tensor).

    Every operand is cast to the buffers' dtype first (no in-place op mixes dtypes)."""
    coef = coef.to(grad_hidden.dtype)[:, None]  # (N, 1)
    grad_hidden.addcmul_(coef, item_emb[targets].to(grad_hidden.dtype))  # (N, 1) * (N, D)
    grad_items.index_add_(0, targets, (coef * hidden.to(grad_items.dtype)).to(grad_items.dtype))  # rows at targets
