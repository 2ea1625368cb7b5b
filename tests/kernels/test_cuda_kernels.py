"""The compiled kernels on a CUDA GPU, at the GPU's default tiles, against the same float64 references as the
interpreter checks (``pytest tests/kernels/test_cuda_kernels.py -m cuda``; skipped without a CUDA device).

The interpreter proves the arithmetic; this proves what the compiler made of it: masks, tails, tensor-core
products, the split combine, the per-round launches."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_ce_on_cuda(dtype: torch.dtype) -> None:
    from tests.kernels.checks_linear_ce import check

    # N and C off the default tiles (64 x 128); D 48 padded to 64; the device's split count
    check(n=1000, c=3001, d=48, dtype=dtype, tiles=None, splits=None, device="cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rece_window_on_cuda(dtype: torch.dtype) -> None:
    from tests.kernels.checks_rece_window import check

    # P 43 (one 64-row tile), I 143 (three 64-item tiles, the last short), W 429 (7 tiles of 64, the last short),
    # 3 rounds with duplicates, pad slots at both ends
    check((300, 1001, 64), n_chunks=7, n_extra=1, rounds=3, dtype=dtype, device="cuda")
