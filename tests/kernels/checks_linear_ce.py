"""Checks of the Triton exact linear CE against a dense float64 reference, at tiny shapes.

Run by test_kernels.py in subprocesses under Triton's interpreter (see conftest.py); not collected itself."""

from __future__ import annotations

import pytest
import torch

from rece_bench.kernels._runtime import Tiles
from tests.kernels.helpers import assert_grad_close, fp32_tol, grads_of, make_inputs, on_device


def dense_ce(hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) CE from the full (N, C) float64 logits of the same (rounded) inputs."""
    logits = hidden.double() @ item_emb.double().T  # (N, D) x (D, C) -> (N, C)
    return torch.logsumexp(logits, dim=1) - logits.gather(1, targets[:, None]).squeeze(1)


def check(
    n: int,
    c: int,
    d: int,
    dtype: torch.dtype,
    tiles: Tiles | None,
    splits: int | None,
    scale: float = 1.0,
    device: str = "cpu",
) -> None:
    """The kernel on ``device`` (tiles/splits None: the device's defaults) against float64 on the CPU."""
    from rece_bench.kernels.linear_ce import linear_cross_entropy

    hidden, item_emb, targets, grad_out = make_inputs(n, c, d, dtype, seed=n + c, scale=scale)
    dev_hidden, dev_items, dev_targets, dev_grad = on_device(device, hidden, item_emb, targets, grad_out)
    got = linear_cross_entropy(dev_hidden, dev_items, dev_targets, tiles=tiles, splits=splits).cpu()
    assert got.dtype == torch.float32 and got.shape == (n,)
    got_grads = grads_of(got, grad_out, dev_hidden, dev_items)
    h64 = hidden.detach().double().requires_grad_()
    e64 = item_emb.detach().double().requires_grad_()
    want = dense_ce(h64, e64, targets)
    want_grads = grads_of(want, grad_out, h64, e64)
    tol = fp32_tol(device) if dtype == torch.float32 else None
    torch.testing.assert_close(got.double(), want.detach(), atol=fp32_tol(device), rtol=2e-6)
    assert_grad_close(got_grads[0], want_grads[0], dtype, "grad hidden", tol)
    assert_grad_close(got_grads[1], want_grads[1], dtype, "grad item_emb", tol)


def fp32() -> None:
    fp32_padded_tails_and_splits()
    fp32_large_logits_one_split()
    rejects_mixed_dtypes()


def fp32_padded_tails_and_splits() -> None:
    # N, C not multiples of the tiles; D 24 padded to 32; 3 splits of the catalogue, the last one short
    check(n=150, c=211, d=24, dtype=torch.float32, tiles=Tiles(rows=32, cols=32), splits=3)


def fp32_large_logits_one_split() -> None:
    # logits in the hundreds: the online log-sum-exp must rescale, not overflow
    check(n=40, c=300, d=64, dtype=torch.float32, tiles=Tiles(rows=16, cols=64), splits=1, scale=8.0)


def half_precision_inputs() -> None:
    for dtype in (torch.bfloat16, torch.float16):
        check(n=70, c=90, d=16, dtype=dtype, tiles=Tiles(rows=16, cols=32), splits=2)


def rejects_mixed_dtypes() -> None:
    from rece_bench.kernels.linear_ce import linear_cross_entropy

    hidden, item_emb, targets, _ = make_inputs(8, 8, 16, torch.float32)
    with pytest.raises(ValueError, match="share a dtype"):
        linear_cross_entropy(hidden, item_emb.detach().bfloat16(), targets)
