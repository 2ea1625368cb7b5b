"""ce and ce_chunked against a dense float64 reference written here."""

from __future__ import annotations

import pytest
import torch

from rece_bench.losses import build_loss
from tests.losses.helpers import assert_same, make_problem, value_and_grads


def reference_ce(hidden, item_emb, targets):
    logits = hidden @ item_emb.T  # (N, C)
    top = logits.max(dim=1, keepdim=True).values
    log_partition = top[:, 0] + (logits - top).exp().sum(dim=1).log()
    return (log_partition - logits[torch.arange(len(targets)), targets]).mean()


SIZES = [(1, 7), (23, 41), (64, 5), (9, 300)]


@pytest.mark.parametrize(("n_positions", "num_items"), SIZES)
@pytest.mark.parametrize(("name", "params"), [("ce", {}), ("ce_chunked", {}), ("ce_chunked", {"block_mib": 1e-4})])
def test_matches_dense_reference(name, params, n_positions, num_items):
    hidden, item_emb, targets = make_problem(n_positions, num_items)
    loss = build_loss(name, num_items=num_items, **params)
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    want = value_and_grads(lambda: reference_ce(hidden, item_emb, targets), hidden, item_emb)
    assert_same(got, want)


@pytest.mark.parametrize("name", ["ce", "ce_chunked"])
def test_large_logits_stay_finite_in_float32(name):
    hidden, item_emb, targets = make_problem(17, 29, scale=30.0)  # logits around +-80
    assert (hidden @ item_emb.T).abs().max() > 80
    h32 = hidden.detach().float().requires_grad_()
    e32 = item_emb.detach().float().requires_grad_()
    loss = build_loss(name, num_items=29, block_mib=1e-4) if name == "ce_chunked" else build_loss(name, num_items=29)
    got = value_and_grads(lambda: loss(h32, e32, targets), h32, e32)
    want = value_and_grads(lambda: reference_ce(hidden, item_emb, targets), hidden, item_emb)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, atol=1e-3, rtol=1e-4)


def test_chunked_equals_ce():
    hidden, item_emb, targets = make_problem(31, 97, seed=3)
    full = build_loss("ce", num_items=97)
    chunked = build_loss("ce_chunked", num_items=97, block_mib=1e-3)
    got = value_and_grads(lambda: chunked(hidden, item_emb, targets), hidden, item_emb)
    assert_same(got, value_and_grads(lambda: full(hidden, item_emb, targets), hidden, item_emb))
