"""Properties of the negative samplers (hypothesis) and a uniformity check."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rece_bench.errors import UserError
from rece_bench.losses import LossBatch, build_loss
from rece_bench.losses.sampling import sample_distinct_ranks, sample_excluding, sample_uniform


@st.composite
def users(draw):
    """(num_items, seen_items (B, S) padded with -1 and holding repeats, n_negatives that fits)."""
    num_items = draw(st.integers(2, 60))
    n_seqs = draw(st.integers(1, 5))
    width = draw(st.integers(1, 12))
    rows = []
    for _ in range(n_seqs):
        items = draw(st.lists(st.integers(0, num_items - 1), max_size=min(width, num_items - 1)))
        rows.append(items + [-1] * (width - len(items)))
    seen = torch.tensor(rows, dtype=torch.long)
    fewest = min(num_items - len({i for i in row if i >= 0}) for row in rows)
    n_negatives = draw(st.integers(1, fewest))
    return num_items, seen, n_negatives, draw(st.integers(0, 2**31))


def seen_sets(seen: torch.Tensor) -> list[set[int]]:
    return [{int(i) for i in row if i >= 0} for row in seen]


@settings(max_examples=60, deadline=None)
@given(users())
def test_bce_negatives_exclude_seen_distinct_exact_count(case):
    num_items, seen, k, seed = case
    seq_index = torch.arange(seen.shape[0]).repeat_interleave(3)  # three positions per sequence
    loss = build_loss("bce", num_items=num_items, n_negatives=k, generator=torch.Generator().manual_seed(seed))
    negatives = loss.sample_negatives(torch.zeros_like(seq_index), LossBatch(seq_index, seen))
    assert negatives.shape == (seq_index.shape[0], k)
    sets = seen_sets(seen)
    for row, seq in zip(negatives.tolist(), seq_index.tolist(), strict=True):
        assert len(set(row)) == k
        assert all(0 <= i < num_items for i in row)
        assert not set(row) & sets[seq]


@settings(max_examples=60, deadline=None)
@given(users())
def test_ce_neg_one_set_per_sequence_excluding_seen(case):
    num_items, seen, k, seed = case
    seq_index = torch.arange(seen.shape[0]).repeat_interleave(2)
    loss = build_loss("ce_neg", num_items=num_items, n_negatives=k, generator=torch.Generator().manual_seed(seed))
    negatives = loss.sample_negatives(LossBatch(seq_index, seen))
    assert negatives.shape == (seen.shape[0], k)  # one shared set per sequence
    for row, own in zip(negatives.tolist(), seen_sets(seen), strict=True):
        assert len(set(row)) == k
        assert all(0 <= i < num_items for i in row)
        assert not set(row) & own


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.integers(0, 2**31))
def test_distinct_ranks_stay_below_their_row_bound(n_rows, k, seed):
    gen = torch.Generator().manual_seed(seed)
    high = torch.randint(k, 3 * k + 2, (n_rows,), generator=gen)
    ranks = sample_distinct_ranks(high, k, gen)
    assert ranks.shape == (n_rows, k)
    for row, bound in zip(ranks.tolist(), high.tolist(), strict=True):
        assert len(set(row)) == k and all(0 <= r < bound for r in row)


@pytest.mark.parametrize("k", [2, 6])  # 2: redraw path; 6 of 8 allowed: random-keys path
def test_excluding_sampler_is_uniform_over_allowed_items(k):
    seen = torch.tensor([[2, 5, -1]])
    rows = 20_000
    negatives = sample_excluding(seen, torch.zeros(rows, dtype=torch.long), k, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(negatives.reshape(-1), minlength=10).double() / rows
    assert counts[2] == 0 and counts[5] == 0
    allowed = counts[[0, 1, 3, 4, 6, 7, 8, 9]]
    torch.testing.assert_close(allowed, torch.full_like(allowed, k / 8), atol=0.02, rtol=0)


def test_excluding_sampler_draws_every_pair_equally_often():
    """Each 2-subset of the 8 allowed items, not just each item, is equally likely (redraw path)."""
    seen = torch.tensor([[2, 5, -1]])
    rows = 28_000
    pairs = sample_excluding(seen, torch.zeros(rows, dtype=torch.long), 2, 10, torch.Generator().manual_seed(1))
    low, high = pairs.min(dim=1).values, pairs.max(dim=1).values
    counts = torch.bincount(low * 10 + high, minlength=100).double()
    allowed = [0, 1, 3, 4, 6, 7, 8, 9]
    expected = torch.tensor([a * 10 + b for i, a in enumerate(allowed) for b in allowed[i + 1 :]])
    assert counts.sum() == counts[expected].sum() == rows  # only allowed, distinct pairs
    freq = counts[expected] / rows  # 28 pairs, 1/28 each; the s.e. of one is about 0.0011
    torch.testing.assert_close(freq, torch.full_like(freq, 1 / 28), atol=0.0045, rtol=0)


def test_uniform_sampler_draws_with_replacement_from_catalogue():
    ids = sample_uniform(500, 8, 5, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert ids.shape == (500, 8) and ids.min() == 0 and ids.max() == 4


def test_too_many_negatives_for_a_user_is_a_user_error():
    seen = torch.tensor([[0, 1, 2, -1], [0, -1, -1, -1]])
    loss = build_loss("bce", num_items=6, n_negatives=4)
    batch = LossBatch(torch.tensor([0, 1]), seen)
    with pytest.raises(UserError, match="n_negatives=4"):
        loss.sample_negatives(torch.tensor([0, 0]), batch)
