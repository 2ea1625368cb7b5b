"""bce, gbce and ce_neg against dense float64 references, on the same injected negatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rece_bench.losses import LossBatch, build_loss
from tests.losses.helpers import assert_same, make_problem, value_and_grads


def make_batch(targets: torch.Tensor, seq_len: int) -> LossBatch:
    """Positions in sequences of seq_len; each user has seen its targets (and repeats them)."""
    n_positions = targets.shape[0]
    seq_index = torch.arange(n_positions) // seq_len
    n_seqs = int(seq_index.max()) + 1
    seen = torch.full((n_seqs, seq_len + 2), -1, dtype=torch.long)
    for t in range(n_positions):
        seen[seq_index[t], t % seq_len] = targets[t]
    seen[:, -1] = seen[:, 0]  # a repeated item
    return LossBatch(seq_index=seq_index, seen_items=seen)


def reference_bce(hidden, item_emb, targets, negatives, beta=1.0):
    pos = (hidden * item_emb[targets]).sum(1)
    total = 0.0
    for t in range(len(targets)):
        neg = item_emb[negatives[t]] @ hidden[t]  # (K,)
        per_column = torch.cat([-beta * F.logsigmoid(pos[t : t + 1]), -F.logsigmoid(-neg)])
        total = total + per_column.sum() / (1 + len(neg))
    return total / len(targets)


def reference_ce_neg(hidden, item_emb, targets, negatives, seq_index):
    total = 0.0
    for t in range(len(targets)):
        ids = torch.cat([targets[t : t + 1], negatives[seq_index[t]]])
        logits = item_emb[ids] @ hidden[t]
        total = total - torch.log_softmax(logits, dim=0)[0]
    return total / len(targets)


SIZES = [(1, 9), (23, 41), (17, 300)]


@pytest.mark.parametrize(("n_positions", "num_items"), SIZES)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_bce_matches_reference(n_positions, num_items, scale):
    hidden, item_emb, targets = make_problem(n_positions, num_items, scale=scale)
    loss = build_loss("bce", num_items=num_items, n_negatives=3, generator=torch.Generator().manual_seed(1))
    batch = make_batch(targets, seq_len=5)
    negatives = loss.sample_negatives(targets, batch)
    got = value_and_grads(lambda: loss.loss_from_negatives(hidden, item_emb, targets, negatives), hidden, item_emb)
    want = value_and_grads(lambda: reference_bce(hidden, item_emb, targets, negatives), hidden, item_emb)
    assert_same(got, want)
    # the module's forward with the same seed draws the same negatives
    loss.generator.manual_seed(1)
    assert torch.equal(loss(hidden, item_emb, targets, batch).detach(), got[0])


@pytest.mark.parametrize("t", [0.0, 0.75, 1.0])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_gbce_matches_reference(t, scale):
    hidden, item_emb, targets = make_problem(19, 37, scale=scale)
    loss = build_loss("gbce", num_items=37, n_negatives=4, t=t, generator=torch.Generator().manual_seed(2))
    negatives = loss.sample_negatives(targets)
    alpha = 4 / 36
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    got = value_and_grads(lambda: loss.loss_from_negatives(hidden, item_emb, targets, negatives), hidden, item_emb)
    want = value_and_grads(lambda: reference_bce(hidden, item_emb, targets, negatives, beta), hidden, item_emb)
    assert_same(got, want)


def test_gbce_positive_term_matches_authors_logit_form():
    """The authors feed log(1/(sigmoid^-beta - 1)) to BCE-with-logits: equal where that does not overflow."""
    loss = build_loss("gbce", num_items=101, n_negatives=10, t=0.75)
    s = torch.linspace(-8, 8, 33, dtype=torch.float64)
    authors = -F.logsigmoid(-torch.log(torch.sigmoid(s) ** -loss.beta - 1))
    torch.testing.assert_close(loss.beta * F.softplus(-s), authors)


def test_gbce_with_t0_equals_bce_on_same_negatives():
    hidden, item_emb, targets = make_problem(21, 33, seed=4)
    negatives = torch.randint(0, 33, (21, 6), generator=torch.Generator().manual_seed(0))
    bce = build_loss("bce", num_items=33, n_negatives=6)
    gbce = build_loss("gbce", num_items=33, n_negatives=6, t=0.0)
    got = value_and_grads(lambda: gbce.loss_from_negatives(hidden, item_emb, targets, negatives), hidden, item_emb)
    want = value_and_grads(lambda: bce.loss_from_negatives(hidden, item_emb, targets, negatives), hidden, item_emb)
    assert_same(got, want, tol=1e-12)


@pytest.mark.parametrize(("n_positions", "num_items"), SIZES)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_ce_neg_matches_reference(n_positions, num_items, scale):
    hidden, item_emb, targets = make_problem(n_positions, num_items, scale=scale)
    loss = build_loss("ce_neg", num_items=num_items, n_negatives=3, generator=torch.Generator().manual_seed(5))
    batch = make_batch(targets, seq_len=4)
    negatives = loss.sample_negatives(batch)
    assert negatives.shape == (batch.seen_items.shape[0], 3)  # one set per sequence
    got = value_and_grads(
        lambda: loss.loss_from_negatives(hidden, item_emb, targets, negatives, batch.seq_index),
        hidden,
        item_emb,
    )
    want = value_and_grads(
        lambda: reference_ce_neg(hidden, item_emb, targets, negatives, batch.seq_index), hidden, item_emb
    )
    assert_same(got, want)
    loss.generator.manual_seed(5)
    assert torch.equal(loss(hidden, item_emb, targets, batch).detach(), got[0])


@pytest.mark.parametrize("name", ["bce", "gbce", "ce_neg"])
def test_float32_large_logits_finite(name):
    hidden, item_emb, targets = make_problem(13, 50, scale=30.0)
    h32 = hidden.detach().float().requires_grad_()
    e32 = item_emb.detach().float().requires_grad_()
    loss = build_loss(name, num_items=50, n_negatives=8)
    value = loss(h32, e32, targets, make_batch(targets, seq_len=5))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(h32.grad).all() and torch.isfinite(e32.grad).all()
