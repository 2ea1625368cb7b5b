"""Exact linear cross-entropy in Triton: loss_t = logsumexp_j <h_t, e_j> - <h_t, e_{y_t}>, no (N, C) logits.

Forward: a program owns a tile of positions and one split of the catalogue; it loops over tiles of items,
keeps a running max and sum in float32 (online log-sum-exp) and picks out the positive's logit when its
column passes by. Splits (several programs per position tile, each over a slice of the items) fill the GPU
when N is small; their (splits, N) partial log-sum-exps are combined in torch. Only the (N,) lse is saved.

Backward: two kernels recompute the logit tiles, both without atomics, so the result is deterministic:
- d hidden: per (position tile, split), loop over item tiles: acc += P @ E_tile, with
  P = g_t (softmax_tj - [j = y_t]); partials (splits, N, D) in float32 are summed in torch.
- d item_emb: per item tile, loop over all position tiles: acc += P^T @ H_tile; each item row is written once.
Recomputing the logits twice costs one more N C D product than a single backward pass with atomics on d items
would; it buys determinism and no float32 (C, D) accumulator beside the gradient (44 MB at C 173,511, D 64).

Accumulation is float32 for every input dtype; for bf16/fp16 the probabilities are rounded to the input dtype
before the tensor-core products (as flash attention does); float32 inputs use _runtime.FP32_DOT_PRECISION
(three-pass TF32, float32-level accuracy). Gradients come back in the inputs' dtype, the per-position loss in float32.

This module imports triton: import it only when a kernel is to run (rece_bench.kernels.triton_available).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rece_bench.kernels._runtime import (
    Tiles,
    block_dim,
    cdiv,
    dot_f32,
    dot_precision,
    gather_rows,
    multiprocessors,
    upcast_dots,
)

# A finite stand-in for -inf in running maxima: exp(m_old - m_new) stays finite. A constexpr: a kernel may
# read no other kind of global.
_NEG = tl.constexpr(-1.0e30)


@triton.jit
def _forward_kernel(
    h_ptr, e_ptr, y_ptr, lse_ptr, pos_ptr, N, C, D, cols_per_split,  # noqa: ANN001
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Per (position tile, split): partial log-sum-exp over the split's items and the positive's logit there."""
    split = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    h = gather_rows(h_ptr, rows, row_ok, D, BLOCK_D)  # (BLOCK_N, BLOCK_D)
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    run_max = tl.full((BLOCK_N,), _NEG, tl.float32)
    run_sum = tl.zeros((BLOCK_N,), tl.float32)
    positive = tl.zeros((BLOCK_N,), tl.float32)
    start = split * cols_per_split
    stop = tl.minimum(start + cols_per_split, C)
    for c0 in range(start, stop, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < stop
        e = gather_rows(e_ptr, cols, col_ok, D, BLOCK_D)  # (BLOCK_C, BLOCK_D)
        logits = dot_f32(h, tl.trans(e), PRECISION, UPCAST)  # (BLOCK_N, BLOCK_C) float32
        logits = tl.where(col_ok[None, :], logits, _NEG)
        new_max = tl.maximum(run_max, tl.max(logits, 1))
        probs = tl.where(col_ok[None, :], tl.exp(logits - new_max[:, None]), 0.0)
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(probs, 1)
        run_max = new_max
        positive += tl.sum(tl.where(cols[None, :] == y[:, None], logits, 0.0), 1)
    tl.store(lse_ptr + split * N + rows, run_max + tl.log(run_sum), mask=row_ok)
    tl.store(pos_ptr + split * N + rows, positive, mask=row_ok)


@triton.jit
def _grad_logits(logits, cols, col_ok, row_ok, y, lse, g):  # noqa: ANN001, ANN201
    """d (sum_t g_t loss_t) / d logit_tj = g_t (softmax_tj - [j = y_t]), 0 outside the real rows and columns."""
    probs = tl.where(row_ok[:, None] & col_ok[None, :], tl.exp(logits - lse[:, None]) * g[:, None], 0.0)
    return probs - tl.where(cols[None, :] == y[:, None], g[:, None], 0.0)


@triton.jit
def _grad_hidden_kernel(
    h_ptr, e_ptr, y_ptr, lse_ptr, g_ptr, dh_ptr, N, C, D, cols_per_split,  # noqa: ANN001
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Per (position tile, split): sum over the split's items of g_t (softmax_tj - [j = y_t]) e_j, float32."""
    split = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    h = gather_rows(h_ptr, rows, row_ok, D, BLOCK_D)
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    acc = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    start = split * cols_per_split
    stop = tl.minimum(start + cols_per_split, C)
    for c0 in range(start, stop, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < stop
        e = gather_rows(e_ptr, cols, col_ok, D, BLOCK_D)  # (BLOCK_C, BLOCK_D)
        logits = dot_f32(h, tl.trans(e), PRECISION, UPCAST)  # (BLOCK_N, BLOCK_C)
        probs = _grad_logits(logits, cols, col_ok, row_ok, y, lse, g)
        acc += dot_f32(probs.to(e.dtype), e, PRECISION, UPCAST)  # (BLOCK_N, BLOCK_C) x (BLOCK_C, BLOCK_D)
    dims = tl.arange(0, BLOCK_D)
    tl.store(
        dh_ptr + split * N * D + rows[:, None] * D + dims[None, :], acc, mask=row_ok[:, None] & (dims[None, :] < D)
    )


@triton.jit
def _grad_items_kernel(
    h_ptr, e_ptr, y_ptr, lse_ptr, g_ptr, de_ptr, N, C, D,  # noqa: ANN001
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Per item tile: sum over all positions of g_t (softmax_tj - [j = y_t]) h_t, written once per item row."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < C
    e = gather_rows(e_ptr, cols, col_ok, D, BLOCK_D)  # (BLOCK_C, BLOCK_D)
    acc = tl.zeros((BLOCK_C, BLOCK_D), tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        h = gather_rows(h_ptr, rows, row_ok, D, BLOCK_D)  # (BLOCK_N, BLOCK_D)
        y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
        logits = dot_f32(h, tl.trans(e), PRECISION, UPCAST)  # (BLOCK_N, BLOCK_C)
        probs = _grad_logits(logits, cols, col_ok, row_ok, y, lse, g)
        acc += dot_f32(tl.trans(probs.to(h.dtype)), h, PRECISION, UPCAST)  # (BLOCK_C, BLOCK_N) x (BLOCK_N, D)
    dims = tl.arange(0, BLOCK_D)
    out = de_ptr + cols.to(tl.int64)[:, None] * D + dims[None, :]
    tl.store(out, acc.to(de_ptr.dtype.element_ty), mask=col_ok[:, None] & (dims[None, :] < D))


def default_tiles(device: torch.device, dtype: torch.dtype) -> Tiles:
    """Tiles for a real GPU: 64 positions x 128 items (a float32 (64, 128) logit tile in registers), 8 warps
    (4 would hold 64 float32 logits per thread beside the operands). Not yet tuned on a GPU (notes of issue 22)."""
    return Tiles(rows=64, cols=128, num_warps=8, num_stages=3)


def split_count(n_positions: int, num_items: int, tiles: Tiles, device: torch.device) -> int:
    """Splits of the catalogue per position tile: about four programs per multiprocessor in all."""
    wanted = cdiv(4 * multiprocessors(device), cdiv(n_positions, tiles.rows))
    return max(1, min(wanted, cdiv(num_items, tiles.cols)))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, item_emb, targets, tiles: Tiles, splits: int):  # noqa: ANN001
        (n, dim), num_items = hidden.shape, item_emb.shape[0]
        per_split = cdiv(cdiv(num_items, splits), tiles.cols) * tiles.cols  # whole tiles per split
        splits = cdiv(num_items, per_split)
        lse_parts = torch.empty(splits, n, dtype=torch.float32, device=hidden.device)  # (splits, N)
        pos_parts = torch.empty_like(lse_parts)
        meta = _meta(tiles, dim, hidden.dtype)
        grid = (cdiv(n, tiles.rows), splits)
        _forward_kernel[grid](hidden, item_emb, targets, lse_parts, pos_parts, n, num_items, dim, per_split, **meta)
        lse = torch.logsumexp(lse_parts, dim=0)  # (splits, N) -> (N,)
        ctx.save_for_backward(hidden, item_emb, targets, lse)
        ctx.tiles, ctx.splits, ctx.per_split = tiles, splits, per_split
        return lse - pos_parts.sum(dim=0)  # the positive's column lies in exactly one split

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, lse = ctx.saved_tensors
        tiles, splits = ctx.tiles, ctx.splits
        (n, dim), num_items = hidden.shape, item_emb.shape[0]
        grad = grad_loss.to(torch.float32).contiguous()
        meta = _meta(tiles, dim, hidden.dtype)
        dh_parts = torch.empty(splits, n, dim, dtype=torch.float32, device=hidden.device)  # (splits, N, D)
        _grad_hidden_kernel[(cdiv(n, tiles.rows), splits)](
            hidden, item_emb, targets, lse, grad, dh_parts, n, num_items, dim, ctx.per_split, **meta
        )
        grad_items = torch.empty_like(item_emb)
        _grad_items_kernel[(cdiv(num_items, tiles.cols),)](
            hidden, item_emb, targets, lse, grad, grad_items, n, num_items, dim, **meta
        )
        return dh_parts.sum(dim=0).to(hidden.dtype), grad_items, None, None, None


def _meta(tiles: Tiles, dim: int, dtype: torch.dtype) -> dict:
    return {
        "BLOCK_N": tiles.rows,
        "BLOCK_C": tiles.cols,
        "BLOCK_D": block_dim(dim),
        "PRECISION": dot_precision(dtype),
        "UPCAST": upcast_dots(dtype),
        "num_warps": tiles.num_warps,
        "num_stages": tiles.num_stages,
    }


def linear_cross_entropy(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    tiles: Tiles | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """(N,) float32 exact CE of every position over the whole catalogue, without the (N, C) logits.

    ``hidden`` (N, D) and ``item_emb`` (C, D) share one dtype (float32, bfloat16 or float16) and device;
    ``tiles``/``splits`` default to sizes for the device (tests pass tiny ones).
    """
    if hidden.dtype != item_emb.dtype:
        raise ValueError(f"hidden and item_emb must share a dtype, got {hidden.dtype} and {item_emb.dtype}")
    tiles = tiles or default_tiles(hidden.device, hidden.dtype)
    splits = splits or split_count(hidden.shape[0], item_emb.shape[0], tiles, hidden.device)
    return _LinearCrossEntropy.apply(hidden.contiguous(), item_emb.contiguous(), targets.contiguous(), tiles, splits)
