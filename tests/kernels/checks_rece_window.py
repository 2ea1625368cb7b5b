"""Checks of the Triton RECE window kernels against a dense float64 reference built from RECE's definition.

Run by test_rece_window.py in subprocesses under Triton's interpreter (see conftest.py); not collected itself.
The reference lists each position's candidates explicitly (a Python set per position, the union over rounds of
the real items in its chunk's window), so it shares nothing with the kernels' earlier-round rule.
"""

from __future__ import annotations

import torch

from rece_bench.kernels._runtime import Tiles
from tests.kernels.helpers import assert_grad_close, fp32_tol, grads_of, make_inputs, on_device


def random_orders(n: int, c: int, rounds: int, p_size: int, i_size: int, seed: int, repeat_first: bool = False):
    """Random sorted orders per round (any permutation is a possible bucketing) and their chunk tables."""
    from rece_bench.kernels.rece_window import WindowOrders

    gen = torch.Generator().manual_seed(seed)
    pos_order = torch.stack([torch.randperm(n, generator=gen) for _ in range(rounds)])  # (r, N)
    item_order = torch.stack([torch.randperm(c, generator=gen) for _ in range(rounds)])  # (r, C)
    if repeat_first and rounds > 1:  # round 1 repeats round 0: every pair of round 1 is a duplicate
        pos_order[1], item_order[1] = pos_order[0], item_order[0]
    pos_chunk = torch.empty_like(pos_order).scatter_(1, pos_order, (torch.arange(n) // p_size).expand(rounds, n))
    item_chunk = torch.empty_like(item_order).scatter_(1, item_order, (torch.arange(c) // i_size).expand(rounds, c))
    return WindowOrders(pos_order, item_order, pos_chunk.to(torch.int16), item_chunk.to(torch.int32))


def candidate_mask(n: int, c: int, targets: torch.Tensor, orders, plan) -> torch.Tensor:
    """(N, C) bool: j is a candidate of t (in some round's window of t's chunk, not t's positive)."""
    sets: list[set[int]] = [set() for _ in range(n)]
    for q in range(orders.pos_order.shape[0]):
        for slot in range(n):
            t = int(orders.pos_order[q, slot])
            chunk = slot // plan.pos_per_chunk
            first = (chunk - plan.n_extra) * plan.items_per_chunk
            for item_slot in range(max(first, 0), min(first + plan.window, c)):
                sets[t].add(int(orders.item_order[q, item_slot]))
    mask = torch.zeros(n, c, dtype=torch.bool)
    for t, items in enumerate(sets):
        mask[t, sorted(items)] = True
        mask[t, int(targets[t])] = False
    return mask


def dense_rece(hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    """(N,) log(exp(s_y) + sum_{candidates} exp(s_tj)) - s_y from the float64 (N, C) logits."""
    logits = hidden @ item_emb.T  # (N, D) x (D, C) -> (N, C)
    positive = logits.gather(1, targets[:, None])  # (N, 1)
    partition = torch.cat([positive, logits.masked_fill(~mask, -torch.inf)], dim=1)  # (N, 1 + C)
    return torch.logsumexp(partition, dim=1) - positive.squeeze(1)


def check(
    shape: tuple[int, int, int],
    n_chunks: int,
    n_extra: int,
    rounds: int,
    dtype: torch.dtype,
    scale: float = 1.0,
    repeat_first: bool = False,
    device: str = "cpu",
) -> None:
    """The kernels on ``device`` (tiny tiles on the CPU, the GPU's defaults elsewhere) against float64 on the CPU."""
    from rece_bench.kernels.rece_window import WindowOrders, WindowPlan, rece_window_loss

    n, c, d = shape
    plan = WindowPlan(n_chunks, -(-n // n_chunks), -(-c // n_chunks), n_extra)
    orders = random_orders(
        n, c, rounds, plan.pos_per_chunk, plan.items_per_chunk, seed=n + rounds, repeat_first=repeat_first
    )
    hidden, item_emb, targets, grad_out = make_inputs(n, c, d, dtype, seed=c + rounds, scale=scale)
    tiles = Tiles(rows=16, cols=16) if device == "cpu" else None
    dev_hidden, dev_items, dev_targets = on_device(device, hidden, item_emb, targets)
    dev_orders = WindowOrders(*on_device(device, *vars(orders).values()))
    got = rece_window_loss(dev_hidden, dev_items, dev_targets, dev_orders, plan, tiles=tiles).cpu()
    assert got.dtype == torch.float32 and got.shape == (n,)
    got_grads = grads_of(got, grad_out, dev_hidden, dev_items)
    h64, e64 = (x.detach().double().requires_grad_() for x in (hidden, item_emb))
    mask = candidate_mask(n, c, targets, orders, plan)
    assert mask.sum() > 0
    want = dense_rece(h64, e64, targets, mask)
    want_grads = grads_of(want, grad_out, h64, e64)
    tol = fp32_tol(device) if dtype == torch.float32 else None
    torch.testing.assert_close(got.double(), want.detach(), atol=fp32_tol(device), rtol=2e-6)
    assert_grad_close(got_grads[0], want_grads[0], dtype, "grad hidden", tol)
    assert_grad_close(got_grads[1], want_grads[1], dtype, "grad item_emb", tol)


def one_round() -> None:
    # P 13 and I 18 against tiles of 16: padded position tiles, two item tiles per chunk (the second short),
    # W 54 not a multiple of 16, pad slots before the first chunk's window and after the last one's
    check((50, 70, 24), n_chunks=4, n_extra=1, rounds=1, dtype=torch.float32)


def three_rounds() -> None:
    # duplicates across rounds from random orders; n_ec 2 with 3 chunks: every window runs past both ends;
    # logits of std 24 (up to about 100), so the online log-sum-exp must rescale
    check((45, 61, 16), n_chunks=3, n_extra=2, rounds=3, dtype=torch.float32, scale=6.0)
    # n_ec 0 and a round repeating round 0 exactly (all its pairs duplicates), 5 chunks
    check((60, 83, 32), n_chunks=5, n_extra=0, rounds=2, dtype=torch.float32, repeat_first=True)


def half_precision_two_rounds() -> None:
    for dtype in (torch.bfloat16, torch.float16):
        check((40, 52, 16), n_chunks=3, n_extra=1, rounds=2, dtype=dtype)


def rejects_bad_plan() -> None:
    from rece_bench.kernels.rece_window import WindowPlan, rece_window_loss

    hidden, item_emb, targets, _ = make_inputs(10, 12, 16, torch.float32)
    orders = random_orders(10, 12, 2, 5, 6, seed=0)
    for plan, match in ((WindowPlan(2, 4, 6, 1), "does not cover"), (WindowPlan(2, 5, 6, 1), None)):
        try:
            rece_window_loss(hidden, item_emb, targets, orders, plan, tiles=Tiles(16, 16))
        except ValueError as error:
            assert match is not None and match in str(error), error
        else:
            assert match is None, "an uncovering plan was accepted"
