"""SCE against a brute-force float64 reference of the authors' arithmetic (shared/reference/SCE.md section 1), a
hand-made case whose buckets are known by construction, its full-CE equivalence and its memory.

The reference selects with Python sorts over the dense projections, scores every (bucket, position) with its own
logsumexp over explicit item lists, takes the maximum over buckets and the mean over the positions chosen.
"""

from __future__ import annotations

import math

import pytest
import torch

from rece_bench.errors import UserError
from rece_bench.losses import build_loss
from rece_bench.losses.sce import default_bucket_size, draw_directions, select
from rece_bench.memory import PeakMemory
from tests.losses.helpers import assert_same, make_problem, value_and_grads


def reference_directions(seed, n_buckets, hidden, mix_x):
    """The authors' draw (SCE.md step 2) from a generator seeded like the loss's: randn(n_b, D) / D^(1/4), or
    G^T X with G = randn(N, n_b) / D^(1/4)."""
    gen = torch.Generator().manual_seed(seed)
    dim = hidden.shape[1]
    if not mix_x:
        return torch.randn(n_buckets, dim, generator=gen, dtype=hidden.dtype) / math.sqrt(math.sqrt(dim))
    mix = torch.randn(hidden.shape[0], n_buckets, generator=gen, dtype=hidden.dtype) / math.sqrt(math.sqrt(dim))
    return mix.T @ hidden.detach()


def top_k_sets(directions, rows, k):
    """Per direction, the k rows with the largest projection, by a Python sort."""
    scores = (directions @ rows.detach().T).tolist()
    return [sorted(range(len(row)), key=lambda i, r=row: -r[i])[:k] for row in scores]


def reference_sce(hidden, item_emb, targets, directions, size_x, size_y):
    pos_sets = top_k_sets(directions, hidden, size_x)
    item_sets = top_k_sets(directions, item_emb, size_y)
    per_position = {}  # position -> CEs of the buckets holding it
    for positions, items in zip(pos_sets, item_sets, strict=True):
        for t in positions:
            y = int(targets[t])
            ids = torch.tensor([j for j in items if j != y] + [y])  # negatives, then the positive last
            logits = item_emb[ids] @ hidden[t]
            per_position.setdefault(t, []).append(torch.logsumexp(logits, dim=0) - logits[-1])
    return torch.stack([torch.stack(values).max() for values in per_position.values()]).mean()


def sce(num_items, seed=0, **params):
    return build_loss("sce", num_items=num_items, generator=torch.Generator().manual_seed(seed), **params)


CASES = [
    # (N, C, n_b, b_x, b_y)
    (23, 41, 4, 6, 9),
    (40, 30, 7, 40, 30),  # every bucket holds every position and item
    (37, 200, 3, 50, 17),  # b_x above N: clamped
    (1, 9, 2, None, 500),  # one position; b_y above C: clamped
    (64, 120, None, None, 8),  # the int(2 sqrt(N)) defaults: n_b = b_x = 16
]


@pytest.mark.parametrize(("n_positions", "num_items", "n_buckets", "size_x", "size_y"), CASES)
@pytest.mark.parametrize("block_mib", [32.0, 1e-4])  # one slice and group, or a few rows / one bucket at a time
def test_matches_reference_on_given_directions(n_positions, num_items, n_buckets, size_x, size_y, block_mib):
    hidden, item_emb, targets = make_problem(n_positions, num_items, seed=n_positions)
    loss = sce(num_items, n_buckets=n_buckets, bucket_size_x=size_x, bucket_size_y=size_y, block_mib=block_mib)
    n_b = n_buckets or default_bucket_size(n_positions)
    directions = torch.randn(n_b, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    b_x = min(size_x or default_bucket_size(n_positions), n_positions)
    got = value_and_grads(lambda: loss.loss_from_directions(hidden, item_emb, targets, directions), hidden, item_emb)
    want = value_and_grads(
        lambda: reference_sce(hidden, item_emb, targets, directions, b_x, min(size_y, num_items)), hidden, item_emb
    )
    assert_same(got, want, tol=1e-10)


@pytest.mark.parametrize("mix_x", [False, True])
def test_forward_draws_the_authors_directions(mix_x):
    hidden, item_emb, targets = make_problem(30, 50, seed=2)
    loss = sce(50, seed=5, n_buckets=5, bucket_size_x=7, bucket_size_y=11, mix_x=mix_x)
    directions = reference_directions(5, 5, hidden, mix_x)
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    want = value_and_grads(lambda: reference_sce(hidden, item_emb, targets, directions, 7, 11), hidden, item_emb)
    assert_same(got, want, tol=1e-10)


@pytest.mark.parametrize("n_buckets", [1, 3])
def test_buckets_covering_everything_equal_full_ce(n_buckets):
    """b_x = N and b_y = C: each bucket's CE is the full CE of each position, whatever the directions."""
    hidden, item_emb, targets = make_problem(29, 47, seed=n_buckets)
    loss = sce(47, seed=n_buckets, n_buckets=n_buckets, bucket_size_x=29, bucket_size_y=47)
    full = build_loss("ce", num_items=47)
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    assert_same(got, value_and_grads(lambda: full(hidden, item_emb, targets), hidden, item_emb), tol=1e-10)


def test_hand_made_buckets_max_over_buckets_and_mean_over_selected():
    """D = 2 and the two directions are the axes, so bucket 0 holds the two rows with the largest first coordinate
    and bucket 1 those with the largest second one. Position 1 sits in both buckets, position 3 in none; item 4
    (the positive of position 2) in no bucket; position 0's and 1's positives are in a bucket's items."""
    hidden = torch.tensor([[3.0, 0.1], [2.0, 2.0], [0.1, 3.0], [0.1, 0.1]], dtype=torch.float64, requires_grad=True)
    item_emb = torch.tensor(
        [[1.0, 0.0], [0.8, -0.5], [0.0, 1.0], [-0.3, 0.7], [-1.0, -1.0]], dtype=torch.float64, requires_grad=True
    )
    targets = torch.tensor([0, 2, 4, 1])
    axes = torch.eye(2, dtype=torch.float64)
    loss = build_loss("sce", num_items=5, n_buckets=2, bucket_size_x=2, bucket_size_y=2)
    pos_ids, item_ids = select(hidden, item_emb, axes, loss.plan(4, 2, 8))
    assert [sorted(b) for b in pos_ids.tolist()] == [[0, 1], [1, 2]]
    assert [sorted(b) for b in item_ids.tolist()] == [[0, 1], [2, 3]]

    s = hidden @ item_emb.T  # (4, 5), s[t, j]

    def ce(t, negatives):  # log(exp(s_ty) + sum exp(s_tj)) - s_ty
        y = int(targets[t])
        return torch.logsumexp(torch.stack([s[t, y], *[s[t, j] for j in negatives]]), dim=0) - s[t, y]

    pos0 = ce(0, [1])  # bucket 0: its items 0, 1; item 0 is the positive, so only item 1 is a negative
    pos1_b0, pos1_b1 = ce(1, [0, 1]), ce(1, [3])  # bucket 1's item 2 is position 1's positive: removed
    pos2 = ce(2, [2, 3])  # the positive (item 4) is in no bucket; it is appended anyway
    assert pos1_b0 > pos1_b1 + 0.1  # the maximum is a real choice
    want = (pos0 + torch.maximum(pos1_b0, pos1_b1) + pos2) / 3  # position 3, in no bucket, is left out
    value = loss.loss_from_directions(hidden, item_emb, targets, axes)
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    grad_hidden, grad_items = torch.autograd.grad(value, (hidden, item_emb))
    want_hidden, want_items = torch.autograd.grad(want, (hidden, item_emb))
    torch.testing.assert_close(grad_hidden, want_hidden, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_items, want_items, rtol=1e-12, atol=1e-12)
    assert grad_hidden[3].abs().max() == 0 and grad_items[4].abs().max() > 0


def test_default_sizes_follow_the_authors_formula_and_clamp():
    assert default_bucket_size(8192) == 181  # int(2 sqrt(8192)) = int(181.02)
    assert default_bucket_size(1024 * 10) == 202  # their Beauty config: batch 1024, about 10 interactions per user
    plan = build_loss("sce", num_items=100).plan(n_positions=30, dim=8)
    assert (plan.n_buckets, plan.size_x, plan.size_y) == (10, 10, 100)  # b_y 256 clamped to C
    plan = build_loss("sce", num_items=1000, n_buckets=3, bucket_size_x=50, bucket_size_y=20).plan(30, 8)
    assert (plan.n_buckets, plan.size_x, plan.size_y) == (3, 30, 20)  # b_x clamped to N


def test_fresh_directions_every_call_and_seeded_generator_repeats():
    hidden, item_emb, targets = make_problem(60, 90)
    loss = sce(90, seed=11, bucket_size_y=7)
    first, second = loss(hidden, item_emb, targets), loss(hidden, item_emb, targets)
    assert first != second
    loss.generator.manual_seed(11)
    assert loss(hidden, item_emb, targets) == first


def test_mix_x_directions_are_mixes_of_the_positions_in_any_slicing():
    """With mix_x each direction is a combination of the rows of X: X's orthogonal complement sees none of it."""
    hidden = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hidden[:, 5:] = 0.0  # the rows span the first five coordinates only
    for rows_per_slice in (50, 7):
        directions = draw_directions(hidden, 4, True, torch.Generator().manual_seed(1), rows_per_slice)
        assert directions.shape == (4, 8) and directions[:, 5:].abs().max() == 0 and directions.abs().max() > 0


def test_float32_large_logits_finite_and_close():
    hidden, item_emb, targets = make_problem(37, 61, scale=30.0)
    assert (hidden @ item_emb.T).abs().max() > 80
    h32 = hidden.detach().float().requires_grad_()
    e32 = item_emb.detach().float().requires_grad_()
    directions = torch.randn(6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loss = sce(61, n_buckets=6, bucket_size_x=9, bucket_size_y=13)
    got = value_and_grads(lambda: loss.loss_from_directions(h32, e32, targets, directions.float()), h32, e32)
    want = value_and_grads(lambda: reference_sce(hidden, item_emb, targets, directions, 9, 13), hidden, item_emb)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("upstream", [-2.0, 0.0])
def test_non_positive_incoming_gradient(upstream):
    hidden, item_emb, targets = make_problem(23, 41, seed=6)
    directions = torch.randn(5, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    value = sce(41, n_buckets=5, bucket_size_x=8, bucket_size_y=10).loss_from_directions(
        hidden, item_emb, targets, directions
    )
    got = torch.autograd.grad(value * upstream, (hidden, item_emb))
    want = torch.autograd.grad(
        reference_sce(hidden, item_emb, targets, directions, 8, 10) * upstream, (hidden, item_emb)
    )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_peak_memory_never_holds_the_logits_and_stays_under_the_sheets_formula():
    """N 512, C 50,000, D 64 in float32: full CE's logits alone are N C 4 B = 102 MB. SCE.md section 3 puts the
    authors' SCE at about 4 copies of the (n_b, b_x, b_y + 1) logits plus the (n_b, C) item projections beyond
    the inputs and their gradients; this implementation must stay under that and far under N C 4 B."""
    n_positions, num_items, dim = 512, 50_000, 64
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n_positions, dim, generator=gen).requires_grad_()
    item_emb = (torch.randn(num_items, dim, generator=gen) / 4).requires_grad_()
    targets = torch.randint(0, num_items, (n_positions,), generator=gen)
    loss = sce(num_items)
    with PeakMemory("cpu", track=(hidden, item_emb, targets)) as meter:
        loss(hidden, item_emb, targets).backward()
    beyond_inputs = meter.stats.peak_delta_bytes
    gradients = (n_positions + num_items) * dim * 4
    n_b = b_x = default_bucket_size(n_positions)  # 45
    sheet = 4 * n_b * b_x * (256 + 1) * 4 + n_b * num_items * 4  # 8.3 MB + 9.0 MB
    assert gradients <= beyond_inputs <= gradients + sheet
    assert beyond_inputs <= loss.work_bytes(n_positions, dim, 4) + gradients  # the budget estimate is an upper bound
    assert beyond_inputs < n_positions * num_items * 4 / 3


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"n_buckets": 0}, "n_buckets must be >= 1, got 0"),
        ({"bucket_size_x": 0}, "bucket_size_x must be >= 1, got 0"),
        ({"bucket_size_y": 2.5}, "bucket_size_y must be an integer, got 2.5"),
        ({"mix_x": 1}, "mix_x must be True or False, got 1"),
        ({"block_mib": 0.0}, "block_mib must lie in"),
        ({"generator": 3}, "generator must be a torch.Generator"),
    ],
)
def test_bad_parameters_are_user_errors(params, pattern):
    with pytest.raises(UserError, match=pattern):
        build_loss("sce", num_items=10, **params)


def test_facts_reach_the_listing_the_budget_and_the_presets():
    from typer.testing import CliRunner

    from rece_bench.budget.ladder import ladder_for, usable_candidates
    from rece_bench.cli import app
    from rece_bench.losses.base import ordered_losses
    from rece_bench.presets import paper_preset

    listing = CliRunner().invoke(app, ["losses"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "sce" in listing.output and "bucket_size_y" in listing.output
    candidates = ladder_for("sce").candidates()
    assert candidates[0].label() == "batch 256, b_y 1024" and candidates[-1].label() == "batch 4, b_y 64"
    assert len(usable_candidates("sce", candidates, num_items=500)) == len(candidates)
    names = [cls.name for cls in ordered_losses()]
    assert names.index("rece") < names.index("sce")  # report_rank 70, after RECE's 60
    beauty = paper_preset("beauty", "sce")
    assert (beauty["batch_size"], beauty["dropout"], beauty["patience"], beauty["dim"]) == (1024, 0.6, 50, 64)
    assert paper_preset("kindle", "sce")["loss_params"] == {
        "n_buckets": 658, "bucket_size_x": 658, "bucket_size_y": 256, "mix_x": True
    }  # fmt: skip
    for kind in ("beauty", "gowalla", "beeradvocate", "behance", "kindle"):
        build_loss("sce", num_items=1000, **paper_preset(kind, "sce")["loss_params"])  # the presets are valid


@pytest.mark.parametrize("mix_x", [False, True])
def test_trains_end_to_end(tiny_data_root, tiny_config, tmp_path, mix_x):
    from rece_bench.training.driver import train_run

    params = {"bucket_size_y": 16, "mix_x": mix_x}
    result = train_run(tiny_config(loss="sce", loss_params=params, epochs=1), tiny_data_root, tmp_path)
    assert result.status == "ok" and math.isfinite(result.history[0]["loss"]) and result.metrics["ndcg@10"] > 0
