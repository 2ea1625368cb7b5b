"""RECE's window in Triton: each chunk of positions against its window of items, no logits in memory.

Semantics (REFERENCE section 1): per round q, positions and items sorted by bucket (``pos_order`` (r, N),
``item_order`` (r, C)) are cut into n_c chunks of P positions and I items; position chunk c scores the item
slots (c - n_ec) I .. (c + n_ec + 1) I (a window of W = (1 + 2 n_ec) I; slots outside 0..C-1 are pad slots,
masked). A pair (t, j) already scored in a round q' < q, that is |chunk_q'(j) - chunk_q'(t)| <= n_ec, is not
counted again; the positive is masked from the candidates and joins the partition once (in torch, here):
loss_t = log(exp(s_y) + sum_{unique candidates j != y} exp(s_tj)) - s_y.

Kernels, one launch per round (rounds in stream order: no atomics, every sum in a fixed order, deterministic):
- forward, grid (n_c, P tiles): a tile of a chunk's positions loops over its window in tiles of items with an
  online log-sum-exp in float32, and folds the round's log-sum-exp into the running (N,) one (each position
  is in one chunk per round, so its row is written by one program per launch).
- d hidden, grid (n_c, P tiles): recomputes the logits over the window, acc += P @ E_tile in float32, adds the
  tile into the float32 (N, D) gradient rows of its positions.
- d items, grid (n_c, I tiles): a tile of item chunk k loops over the position chunks k - n_ec .. k + n_ec
  (exactly those whose windows hold it), recomputes, acc += P^T @ H_tile, adds into the float32 (C, D) rows.
The earlier-round rule is evaluated in the kernels from the small (r, N) and (r, C) chunk tables: for each
earlier round, one gathered integer per position and per item of the tile, compared with n_ec. Nothing of
size (N, W) or (N, C) is ever stored; the forward saves only the (N,) log-partition.

Accumulation is float32 for all input dtypes; bf16/fp16 probabilities are rounded to the input dtype before
the tensor-core products; gradients come back in the inputs' dtype, the per-position loss in float32.
This module imports triton: import it only when a kernel is to run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from rece_bench.kernels._runtime import Tiles, block_dim, cdiv, dot_f32, dot_precision, gather_rows, upcast_dots

# A finite stand-in for -inf: running maxima and empty partitions stay finite, no NaN from inf - inf. A
# constexpr: a kernel may read no other kind of global.
_NEG = tl.constexpr(-1.0e30)


@dataclass(frozen=True)
class WindowPlan:
    """The chunking of one call: n_c chunks of P positions and I items, n_ec neighbouring chunks each side."""

    n_chunks: int
    pos_per_chunk: int  # P
    items_per_chunk: int  # I
    n_extra: int  # n_ec

    @property
    def window(self) -> int:  # W
        return (1 + 2 * self.n_extra) * self.items_per_chunk


@dataclass(frozen=True)
class WindowOrders:
    """Per round, the sorted orders and each row's chunk index (the chunk tables may be None with one round)."""

    pos_order: torch.Tensor  # (r, N) integer: position at each sorted slot
    item_order: torch.Tensor  # (r, C) integer: item at each sorted slot
    pos_chunk: torch.Tensor | None  # (r, N) integer: chunk of position t in round q (slot // P)
    item_chunk: torch.Tensor | None  # (r, C) integer: chunk of item j in round q (slot // I)


@triton.jit
def _kept(items, y, pos, row_ok, col_ok, pos_chunk_ptr, item_chunk_ptr, q, N, C, n_ec):  # noqa: ANN001, ANN201
    """(rows, cols) bool: the pair is a real candidate of round q, not the positive (it joins the partition once,
    in torch) and not scored in an earlier round q' (|chunk_q'(j) - chunk_q'(t)| <= n_ec there)."""
    keep = row_ok[:, None] & col_ok[None, :] & (items[None, :] != y[:, None])
    for earlier in range(0, q):
        pos_chunk = tl.load(pos_chunk_ptr + earlier * N + pos, mask=row_ok, other=0).to(tl.int32)
        item_chunk = tl.load(item_chunk_ptr + earlier * C + items, mask=col_ok, other=0).to(tl.int32)
        keep = keep & (tl.abs(item_chunk[None, :] - pos_chunk[:, None]) > n_ec)
    return keep


@triton.jit
def _chunk_positions(pos_order_ptr, q, N, P, c, p0, BLOCK_P: tl.constexpr):  # noqa: ANN001, ANN201
    """Positions (and which are real) at slots c P + p0 .. + BLOCK_P of round q's order, within chunk c."""
    rows = p0 + tl.arange(0, BLOCK_P)
    row_ok = (rows < P) & (c * P + rows < N)
    return tl.load(pos_order_ptr + q * N + c * P + rows, mask=row_ok, other=0), row_ok


@triton.jit
def _window_items(item_order_ptr, q, C, I, c, n_ec, w0, BLOCK_W: tl.constexpr):  # noqa: ANN001, ANN201, E741
    """Items (and which are real) at columns w0 .. + BLOCK_W of chunk c's window in round q: item slots from
    (c - n_ec) I; columns past W and slots outside 0..C-1 (pad slots) are not real."""
    cols = w0 + tl.arange(0, BLOCK_W)
    slots = (c - n_ec) * I + cols
    ok = (cols < (1 + 2 * n_ec) * I) & (slots >= 0) & (slots < C)
    return tl.load(item_order_ptr + q * C + slots, mask=ok, other=0), ok


@triton.jit(do_not_specialize=["q"])  # one compilation for every round
def _forward_kernel(
    h_ptr, e_ptr, y_ptr, pos_order_ptr, item_order_ptr, pos_chunk_ptr, item_chunk_ptr, lse_ptr,  # noqa: ANN001
    q, N, C, D, P, I, n_ec,  # noqa: ANN001, E741
    BLOCK_P: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Round q, one tile of position chunk c: fold the log-sum-exp over its unique candidates into lse (N,)."""
    c = tl.program_id(0)
    pos, row_ok = _chunk_positions(pos_order_ptr, q, N, P, c, tl.program_id(1) * BLOCK_P, BLOCK_P)
    h = gather_rows(h_ptr, pos, row_ok, D, BLOCK_D)  # (BLOCK_P, BLOCK_D)
    y = tl.load(y_ptr + pos, mask=row_ok, other=-1)
    run_max = tl.full((BLOCK_P,), _NEG, tl.float32)
    run_sum = tl.zeros((BLOCK_P,), tl.float32)
    for w0 in range(0, (1 + 2 * n_ec) * I, BLOCK_W):
        items, col_ok = _window_items(item_order_ptr, q, C, I, c, n_ec, w0, BLOCK_W)
        e = gather_rows(e_ptr, items, col_ok, D, BLOCK_D)  # (BLOCK_W, BLOCK_D)
        logits = dot_f32(h, tl.trans(e), PRECISION, UPCAST)  # (BLOCK_P, BLOCK_W) float32
        keep = _kept(items, y, pos, row_ok, col_ok, pos_chunk_ptr, item_chunk_ptr, q, N, C, n_ec)
        logits = tl.where(keep, logits, _NEG)
        new_max = tl.maximum(run_max, tl.max(logits, 1))
        probs = tl.where(keep, tl.exp(logits - new_max[:, None]), 0.0)
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(probs, 1)
        run_max = new_max
    # a kept candidate at the running maximum adds exp(0) = 1, so the sum is 0 (nothing kept) or at least 1
    tile_lse = tl.where(run_sum > 0, run_max + tl.log(tl.maximum(run_sum, 1.0)), _NEG)
    old = tl.load(lse_ptr + pos, mask=row_ok, other=_NEG)
    top = tl.maximum(old, tile_lse)
    tl.store(lse_ptr + pos, top + tl.log(tl.exp(old - top) + tl.exp(tile_lse - top)), mask=row_ok)


@triton.jit(do_not_specialize=["q"])  # one compilation for every round
def _grad_hidden_kernel(
    h_ptr, e_ptr, y_ptr, pos_order_ptr, item_order_ptr, pos_chunk_ptr, item_chunk_ptr, lz_ptr, g_ptr,  # noqa: ANN001
    dh_ptr, q, N, C, D, P, I, n_ec,  # noqa: ANN001, E741
    BLOCK_P: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Round q, one tile of position chunk c: dh_t += sum_j g_t softmax_tj e_j over its kept candidates."""
    c = tl.program_id(0)
    pos, row_ok = _chunk_positions(pos_order_ptr, q, N, P, c, tl.program_id(1) * BLOCK_P, BLOCK_P)
    h = gather_rows(h_ptr, pos, row_ok, D, BLOCK_D)  # (BLOCK_P, BLOCK_D)
    y = tl.load(y_ptr + pos, mask=row_ok, other=-1)
    log_z = tl.load(lz_ptr + pos, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + pos, mask=row_ok, other=0.0)
    acc = tl.zeros((BLOCK_P, BLOCK_D), tl.float32)
    for w0 in range(0, (1 + 2 * n_ec) * I, BLOCK_W):
        items, col_ok = _window_items(item_order_ptr, q, C, I, c, n_ec, w0, BLOCK_W)
        e = gather_rows(e_ptr, items, col_ok, D, BLOCK_D)  # (BLOCK_W, BLOCK_D)
        logits = dot_f32(h, tl.trans(e), PRECISION, UPCAST)  # (BLOCK_P, BLOCK_W)
        keep = _kept(items, y, pos, row_ok, col_ok, pos_chunk_ptr, item_chunk_ptr, q, N, C, n_ec)
        probs = tl.where(keep, tl.exp(logits - log_z[:, None]) * g[:, None], 0.0)
        acc += dot_f32(probs.to(e.dtype), e, PRECISION, UPCAST)  # (BLOCK_P, BLOCK_W) x (BLOCK_W, BLOCK_D)
    dims = tl.arange(0, BLOCK_D)
    out = dh_ptr + pos[:, None] * D + dims[None, :]  # float32 (N, D); each position once per round
    tile_ok = row_ok[:, None] & (dims[None, :] < D)
    tl.store(out, tl.load(out, mask=tile_ok, other=0.0) + acc, mask=tile_ok)


@triton.jit(do_not_specialize=["q"])  # one compilation for every round
def _grad_items_kernel(
    h_ptr, e_ptr, y_ptr, pos_order_ptr, item_order_ptr, pos_chunk_ptr, item_chunk_ptr, lz_ptr, g_ptr,  # noqa: ANN001
    de_ptr, q, N, C, D, P, I, n_c, n_ec,  # noqa: ANN001, E741
    BLOCK_P: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    """Round q, one tile of item chunk k: de_j += sum_t g_t softmax_tj h_t over the position chunks k +- n_ec."""
    k = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    col_ok = (cols < I) & (k * I + cols < C)
    items = tl.load(item_order_ptr + q * C + k * I + cols, mask=col_ok, other=0)
    e = gather_rows(e_ptr, items, col_ok, D, BLOCK_D)  # (BLOCK_I, BLOCK_D)
    acc = tl.zeros((BLOCK_I, BLOCK_D), tl.float32)
    for c in range(tl.maximum(k - n_ec, 0), tl.minimum(k + n_ec + 1, n_c)):  # the windows that hold chunk k
        for p0 in range(0, P, BLOCK_P):
            pos, row_ok = _chunk_positions(pos_order_ptr, q, N, P, c, p0, BLOCK_P)
            h = gather_rows(h_ptr, pos, row_ok, D, BLOCK_D)  # (BLOCK_P, BLOCK_D)
            y = tl.load(y_ptr + pos, mask=row_ok, other=-1)
            log_z = tl.load(lz_ptr + pos, mask=row_ok, other=0.0)
            g = tl.load(g_ptr + pos, mask=row_ok, other=0.0)
            logits = dot_f32(h, tl.trans(e), PRECISION, UPCAST)  # (BLOCK_P, BLOCK_I)
            keep = _kept(items, y, pos, row_ok, col_ok, pos_chunk_ptr, item_chunk_ptr, q, N, C, n_ec)
            probs = tl.where(keep, tl.exp(logits - log_z[:, None]) * g[:, None], 0.0)
            acc += dot_f32(tl.trans(probs.to(h.dtype)), h, PRECISION, UPCAST)  # (BLOCK_I, BLOCK_P) x (BLOCK_P, D)
    dims = tl.arange(0, BLOCK_D)
    out = de_ptr + items.to(tl.int64)[:, None] * D + dims[None, :]  # float32 (C, D); each item once per round
    tile_ok = col_ok[:, None] & (dims[None, :] < D)
    tl.store(out, tl.load(out, mask=tile_ok, other=0.0) + acc, mask=tile_ok)


@dataclass(frozen=True)
class _Launch:
    """Everything a round's launches share: the inputs, the tables and the compile-time sizes."""

    hidden: torch.Tensor
    item_emb: torch.Tensor
    targets: torch.Tensor
    orders: WindowOrders
    plan: WindowPlan
    tiles: Tiles

    def tables(self) -> tuple[torch.Tensor, ...]:
        """The pointer arguments every kernel starts with; with one round the chunk tables are never read, so the
        orders stand in for them."""
        o = self.orders
        pos_chunk = o.pos_order if o.pos_chunk is None else o.pos_chunk
        item_chunk = o.item_order if o.item_chunk is None else o.item_chunk
        return self.hidden, self.item_emb, self.targets, o.pos_order, o.item_order, pos_chunk, item_chunk

    def sizes(self, q: int) -> tuple[int, ...]:
        p = self.plan
        return (
            q,
            self.hidden.shape[0],
            self.item_emb.shape[0],
            self.hidden.shape[1],
            p.pos_per_chunk,
            p.items_per_chunk,
        )

    def meta(self, inner: str) -> dict:
        return {
            "BLOCK_P": self.tiles.rows,
            inner: self.tiles.cols,
            "BLOCK_D": block_dim(self.hidden.shape[1]),
            "PRECISION": dot_precision(self.hidden.dtype),
            "UPCAST": upcast_dots(self.hidden.dtype),
            "num_warps": self.tiles.num_warps,
            "num_stages": self.tiles.num_stages,
        }

    def position_grid(self) -> tuple[int, int]:
        return (self.plan.n_chunks, cdiv(self.plan.pos_per_chunk, self.tiles.rows))


def _rounds(orders: WindowOrders) -> int:
    return orders.pos_order.shape[0]


class _ReceWindow(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, item_emb, targets, orders: WindowOrders, plan: WindowPlan, tiles: Tiles):  # noqa: ANN001
        launch = _Launch(hidden, item_emb, targets, orders, plan, tiles)
        lse = torch.full((hidden.shape[0],), _NEG.value, dtype=torch.float32, device=hidden.device)  # (N,)
        for q in range(_rounds(orders)):
            _forward_kernel[launch.position_grid()](
                *launch.tables(), lse, *launch.sizes(q), plan.n_extra, **launch.meta("BLOCK_W")
            )
        positive = (hidden.float() * item_emb[targets].float()).sum(dim=1)  # (N, D) * (N, D) -> (N,)
        log_z = torch.logaddexp(positive, lse)  # the positive joins the partition once
        ctx.save_for_backward(hidden, item_emb, targets, positive, log_z)
        ctx.orders, ctx.plan, ctx.tiles = orders, plan, tiles
        return log_z - positive

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, positive, log_z = ctx.saved_tensors
        launch = _Launch(hidden, item_emb, targets, ctx.orders, ctx.plan, ctx.tiles)
        plan, grad = launch.plan, grad_loss.to(torch.float32).contiguous()
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)  # (N, D)
        grad_items = torch.zeros(item_emb.shape, dtype=torch.float32, device=item_emb.device)  # (C, D)
        coef = (positive - log_z).exp().sub(1).mul(grad)  # d loss / d s_y = softmax_y - 1, times g
        grad_hidden.addcmul_(coef[:, None], item_emb[targets].float())  # (N, 1) * (N, D)
        grad_items.index_add_(0, targets, coef[:, None] * hidden.float())  # (N, D) rows added at the targets
        item_grid = (plan.n_chunks, cdiv(plan.items_per_chunk, launch.tiles.cols))
        for q in range(_rounds(launch.orders)):
            sizes = launch.sizes(q)
            _grad_hidden_kernel[launch.position_grid()](
                *launch.tables(), log_z, grad, grad_hidden, *sizes, plan.n_extra, **launch.meta("BLOCK_W")
            )
            _grad_items_kernel[item_grid](
                *launch.tables(), log_z, grad, grad_items, *sizes, plan.n_chunks, plan.n_extra, **launch.meta("BLOCK_I")
            )
        return grad_hidden.to(hidden.dtype), grad_items.to(item_emb.dtype), None, None, None, None


def default_tiles(plan: WindowPlan, dtype: torch.dtype) -> Tiles:
    """GPU tiles: positions per tile the chunk's P rounded up to a power of two (16..64), items 64 per tile.
    Not yet tuned on a GPU (see the notes of issue 22)."""
    rows = min(64, max(16, 1 << (plan.pos_per_chunk - 1).bit_length()))
    return Tiles(rows=rows, cols=64, num_warps=4, num_stages=2)


def rece_window_loss(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    orders: WindowOrders,
    plan: WindowPlan,
    tiles: Tiles | None = None,
) -> torch.Tensor:
    """(N,) float32 RECE loss of every position over its unique candidates (all rounds), see the module doc.

    ``hidden`` (N, D) and ``item_emb`` (C, D) share one dtype; the plan must cover them (n_c P >= N,
    n_c I >= C); ``tiles`` defaults to sizes for a GPU (tests pass tiny ones). Rounds after the first need the
    chunk tables.
    """
    _check(hidden, item_emb, orders, plan)
    tiles = tiles or default_tiles(plan, hidden.dtype)
    contiguous = WindowOrders(*(None if t is None else t.contiguous() for t in vars(orders).values()))
    return _ReceWindow.apply(hidden.contiguous(), item_emb.contiguous(), targets.contiguous(), contiguous, plan, tiles)


def _check(hidden: torch.Tensor, item_emb: torch.Tensor, orders: WindowOrders, plan: WindowPlan) -> None:
    (n, _), num_items = hidden.shape, item_emb.shape[0]
    if hidden.dtype != item_emb.dtype:
        raise ValueError(f"hidden and item_emb must share a dtype, got {hidden.dtype} and {item_emb.dtype}")
    if plan.n_chunks * plan.pos_per_chunk < n or plan.n_chunks * plan.items_per_chunk < num_items:
        raise ValueError(f"{plan} does not cover N {n} and C {num_items}")
    if orders.pos_order.shape[1] != n or orders.item_order.shape[1] != num_items:
        raise ValueError("pos_order must be (r, N) and item_order (r, C)")
    if orders.pos_order.shape[0] > 1 and (orders.pos_chunk is None or orders.item_chunk is None):
        raise ValueError("rounds after the first need the chunk tables pos_chunk (r, N) and item_chunk (r, C)")


def rece_window_from(
    hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, plan: object, rounds: object
) -> torch.Tensor:
    """(N,) RECE loss from the torch path's plan and rounds (rece.RecePlan, rece.Rounds: read by attribute)."""
    window_plan = WindowPlan(plan.n_chunks, plan.pos_per_chunk, plan.items_per_chunk, plan.n_extra)
    orders = WindowOrders(rounds.pos_order, rounds.item_order, rounds.pos_chunk, rounds.item_chunk)
    return rece_window_loss(hidden, item_emb, targets, orders, window_plan)
