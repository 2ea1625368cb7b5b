"""RECE against a naive float64 reference of the authors' semantics (REFERENCE section 1), and its
equivalences.

The reference redraws the same random vectors from an identically seeded generator (RECE's first draw is
randn(r, n_b, D)), buckets by argmax, sorts stably, cuts equal chunks, counts every (position, item) pair over
the rounds and adds -log(count): the authors' duplicate correction, which the implementation replaces by
keeping a pair in its first round only.
"""

from __future__ import annotations

import math

import pytest
import torch

from rece_bench.losses import base as loss_base
from rece_bench.losses import build_loss
from rece_bench.losses.rece import (
    default_n_buckets,
    draw_rounds,
    make_slots,
    pack_flags,
    round_groups,
    scored_before,
    unpack_flags,
)
from rece_bench.opcount import count_ops
from tests.losses.helpers import assert_same, make_problem, value_and_grads


def sorted_chunks(rows, proj, n_chunks):
    """Chunk index of every row in one round: bucket = argmax, stable sort by bucket, equal chunks."""
    buckets = (rows.detach() @ proj.T).argmax(dim=1).tolist()
    order = sorted(range(len(buckets)), key=lambda i: (buckets[i], i))
    per_chunk = math.ceil(len(buckets) / n_chunks)
    chunk = [0] * len(buckets)
    for slot, row in enumerate(order):
        chunk[row] = slot // per_chunk
    return chunk


def reference_rece(hidden, item_emb, targets, n_buckets, n_chunks, n_extra, rounds, seed, proj_dtype=None):
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn((rounds, n_buckets, hidden.shape[1]), generator=gen, dtype=proj_dtype or hidden.dtype)
    proj = proj.to(hidden.dtype)
    n_positions, num_items = hidden.shape[0], item_emb.shape[0]
    windows = []  # per round, per position: the items of its window (each appears once within a round)
    for q in range(rounds):
        pos_chunk = sorted_chunks(hidden, proj[q], n_chunks)
        item_chunk = sorted_chunks(item_emb, proj[q], n_chunks)
        windows.append([[j for j in range(num_items) if abs(item_chunk[j] - pos_chunk[t]) <= n_extra]
                        for t in range(n_positions)])  # fmt: skip
    total = 0.0
    for t in range(n_positions):
        y = int(targets[t])
        multiset = [j for q in range(rounds) for j in windows[q][t] if j != y]  # positive masked
        count = {j: multiset.count(j) for j in multiset}
        ids = torch.tensor([y, *multiset], dtype=torch.long)
        correction = torch.tensor([0.0] + [math.log(count[j]) for j in multiset], dtype=hidden.dtype)
        logits = item_emb[ids] @ hidden[t] - correction  # k copies of s_j - log(k) count s_j once
        total = total + torch.logsumexp(logits, dim=0) - logits[0]
    return total / n_positions


def rece(num_items, seed, **params):
    return build_loss("rece", num_items=num_items, generator=torch.Generator().manual_seed(seed), **params)


CASES = [
    # (N, C, n_buckets, buckets_per_chunk, n_extra, rounds)
    (23, 41, 5, 1.0, 1, 1),
    (23, 41, 5, 1.0, 1, 3),
    (23, 41, 4, 0.5, 0, 2),  # more chunks than buckets
    (1, 19, 3, 1.0, 1, 2),  # a single position
    (13, 3, 7, 1.0, 1, 2),  # fewer items than buckets
    (30, 64, 6, 2.0, 2, 4),  # fewer chunks than buckets
]


@pytest.mark.parametrize(("n_positions", "num_items", "n_buckets", "per_chunk", "n_extra", "rounds"), CASES)
@pytest.mark.parametrize("block_mib", [32.0, 1e-5])  # one streamed group, or one chunk per group
def test_matches_naive_reference(n_positions, num_items, n_buckets, per_chunk, n_extra, rounds, block_mib):
    hidden, item_emb, targets = make_problem(n_positions, num_items, seed=n_positions + rounds)
    loss = rece(num_items, 7, n_buckets=n_buckets, buckets_per_chunk=per_chunk, n_extra_chunks=n_extra,
                rounds=rounds, block_mib=block_mib)  # fmt: skip
    n_chunks = max(1, round(n_buckets / per_chunk))
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    want = value_and_grads(
        lambda: reference_rece(hidden, item_emb, targets, n_buckets, n_chunks, n_extra, rounds, 7),
        hidden,
        item_emb,
    )
    assert_same(got, want)


def ce_reference(hidden, item_emb, targets):
    return build_loss("ce", num_items=item_emb.shape[0])(hidden, item_emb, targets)


def test_one_bucket_equals_ce():
    hidden, item_emb, targets = make_problem(29, 47)
    got = value_and_grads(lambda: rece(47, 0, n_buckets=1)(hidden, item_emb, targets), hidden, item_emb)
    assert_same(got, value_and_grads(lambda: ce_reference(hidden, item_emb, targets), hidden, item_emb))


@pytest.mark.parametrize("rounds", [1, 2, 3])
@pytest.mark.parametrize(("n_buckets", "n_extra"), [(6, 5), (6, 9), (11, 10)])
def test_windows_covering_everything_equal_ce(rounds, n_buckets, n_extra):
    """n_ec >= n_c - 1: every chunk sees the catalogue in every round; repeats must count once."""
    hidden, item_emb, targets = make_problem(31, 53, seed=rounds)
    loss = rece(53, rounds, n_buckets=n_buckets, n_extra_chunks=n_extra, rounds=rounds, block_mib=1e-5)
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    assert_same(got, value_and_grads(lambda: ce_reference(hidden, item_emb, targets), hidden, item_emb))


def test_default_bucket_count_follows_formula_and_is_used():
    assert default_n_buckets(8192, 100_000, 1, 1.0) == 313  # the authors' n_b at these sizes
    assert default_n_buckets(100, 7, 0, 1.0) == int(math.sqrt(4 * 7))
    loss = build_loss("rece", num_items=41, n_extra_chunks=1)
    assert loss.plan(23).n_buckets == default_n_buckets(23, 41, 1, 1.0)


def test_large_logits_float32_finite_and_close():
    hidden, item_emb, targets = make_problem(37, 61, scale=30.0)  # logits around +-80
    assert (hidden @ item_emb.T).abs().max() > 80
    h32 = hidden.detach().float().requires_grad_()
    e32 = item_emb.detach().float().requires_grad_()
    got = value_and_grads(lambda: rece(61, 3, n_buckets=4, rounds=2)(h32, e32, targets), h32, e32)
    want = value_and_grads(
        lambda: reference_rece(hidden, item_emb, targets, 4, 4, 1, 2, 3, torch.float32), hidden, item_emb
    )
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b.double(), atol=1e-3, rtol=1e-4)


def test_fresh_projections_every_call_and_seeded_generator_repeats():
    hidden, item_emb, targets = make_problem(40, 90)
    loss = rece(90, 11, n_buckets=9, n_extra_chunks=0)
    first, second = loss(hidden, item_emb, targets), loss(hidden, item_emb, targets)
    assert first != second
    loss.generator.manual_seed(11)
    assert loss(hidden, item_emb, targets) == first


def test_flag_packing_round_trips_every_byte_pattern():
    patterns = torch.arange(256, dtype=torch.long)
    flags = ((patterns[:, None] >> torch.arange(8)) & 1).to(torch.uint8).reshape(-1)  # bit i of k -> flag 8k+i
    packed = pack_flags(flags)
    assert packed.dtype == torch.uint8 and packed.tolist() == patterns.tolist()
    assert torch.equal(unpack_flags(packed), flags)
    shuffled = flags[torch.randperm(flags.numel(), generator=torch.Generator().manual_seed(0))]
    assert torch.equal(unpack_flags(pack_flags(shuffled)), shuffled)


def test_earlier_round_flags_match_a_direct_window_check():
    """The flags of every (item, position) pair of every group and round against |chunk(j) - chunk(t)| <= n_ec in
    some earlier round, the chunks read off the sorted orders; pad slots (ids C and N) are left out."""
    hidden, item_emb, targets = make_problem(57, 83, seed=4)
    for n_extra in (0, 2):
        loss = rece(83, 5, n_buckets=7, n_extra_chunks=n_extra, rounds=4, block_mib=1e-3)
        plan = loss.plan(57, hidden.element_size(), hidden.shape[1])
        assert plan.group_chunks == (1,) * 4  # one item chunk per group
        rounds = draw_rounds(hidden.detach(), item_emb.detach(), plan, loss.generator)
        item_chunk = [order.argsort() // plan.items_per_chunk for order in rounds.item_order]  # (C,) per round
        pos_chunk = [order.argsort() // plan.pos_per_chunk for order in rounds.pos_order]  # (N,) per round
        for group in round_groups(plan, make_slots(rounds, plan)):
            if group.q == 0:
                continue
            seen = scored_before(plan, rounds, group.q, group.item_ids, group.pos_ids)[0]  # (I, V)
            window = group.pos_ids[: plan.width]  # one chunk: its window is all the group's position slots
            real = (group.item_ids < 83)[:, None] & (window < 57)[None, :]  # (I, V)
            scored = torch.zeros(plan.items_per_chunk, plan.width, dtype=torch.bool)
            for earlier in range(group.q):
                items = item_chunk[earlier][group.item_ids.clamp(max=82)]  # (I,)
                positions = pos_chunk[earlier][window.clamp(max=56)]  # (V,)
                scored |= (items[:, None] - positions[None, :]).abs() <= n_extra
            assert torch.equal(seen[real], scored[real])
            assert real.any()


def test_rows_with_masked_extremes_stay_exact():
    """A masked pair far above the rest (the positive at +60) sets the row's shift; the loss is still exact."""
    hidden, item_emb, targets = make_problem(19, 37, seed=9)
    with torch.no_grad():
        item_emb[targets[0]] = hidden[0] * (60.0 / float(hidden[0] @ hidden[0]))  # s_pos = 60 for position 0
    loss = rece(37, 2, n_buckets=3, n_extra_chunks=1, rounds=3)
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    want = value_and_grads(lambda: reference_rece(hidden, item_emb, targets, 3, 3, 1, 3, 2), hidden, item_emb)
    assert_same(got, want)


@pytest.mark.parametrize("rounds", [1, 2])
def test_candidate_far_above_the_positive_takes_the_exact_path_in_float32(rounds):
    """With several rounds, forward rows are shifted by the positive's logit; a candidate 100 above it overflows
    exp in float32 and must send the group to the max-shifted recomputation (one round shifts by the maximum
    at once), with the float64 reference's value and gradients."""
    hidden, item_emb, targets = make_problem(17, 29, seed=3)
    with torch.no_grad():
        unit = hidden[0] / hidden[0].norm()
        item_emb[targets[0]] = -50.0 * unit / hidden[0].norm()  # s_pos = -50 for position 0
        others = [j for j in range(29) if j != int(targets[0])]
        item_emb[others[0]] = 50.0 * unit / hidden[0].norm()  # s = +50, a candidate in every window (one bucket)
    h32 = hidden.detach().float().requires_grad_()
    e32 = item_emb.detach().float().requires_grad_()
    got = value_and_grads(lambda: rece(29, 1, n_buckets=1, rounds=rounds)(h32, e32, targets), h32, e32)
    want = value_and_grads(lambda: ce_reference(hidden, item_emb, targets), hidden, item_emb)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rounds", [1, 3])
@pytest.mark.parametrize("upstream", [-2.0, 0.0])
def test_non_positive_incoming_gradient(upstream, rounds):
    """The backward folds log(g) into the shift only for g > 0; other upstream gradients take the product."""
    hidden, item_emb, targets = make_problem(23, 41, seed=6)
    loss = rece(41, 4, n_buckets=5, n_extra_chunks=1, rounds=rounds)
    value = loss(hidden, item_emb, targets)
    got = torch.autograd.grad(value * upstream, (hidden, item_emb))
    ref = reference_rece(hidden, item_emb, targets, 5, 5, 1, rounds, 4)
    want = torch.autograd.grad(ref * upstream, (hidden, item_emb))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("n_positions", "num_items", "n_buckets", "rounds"), [(23, 41, 5, 3), (60, 300, 6, 4)])
def test_bf16_inputs_match_the_float64_value(n_positions, num_items, n_buckets, rounds):
    """bf16 hidden and item_emb (the float64 reference gets the same rounded values, and the same float32 random
    vectors: RECE buckets reduced-precision inputs in float32, so the candidates are the reference's).

    Tolerance, with u = 2^-9 bf16's unit roundoff: the products round each logit s to bf16, moving it by up to
    u |s| (|s| up to about 16 here), so each softmax weight by up to about 3%, with random signs; every sum is
    float32 and the gradients are cast to bf16 once at the end. Allowed: the value within u relatively (measured
    3e-4), the gradients within 2^-5 in Frobenius norm (measured 1.4e-2 at most)."""
    hidden, item_emb, targets = make_problem(n_positions, num_items, dim=16, seed=rounds)
    h16, e16 = hidden.detach().bfloat16().requires_grad_(), item_emb.detach().bfloat16().requires_grad_()
    h64, e64 = h16.detach().double().requires_grad_(), e16.detach().double().requires_grad_()
    loss = rece(num_items, 7, n_buckets=n_buckets, n_extra_chunks=1, rounds=rounds)
    got = value_and_grads(lambda: loss(h16, e16, targets), h16, e16)
    want = value_and_grads(
        lambda: reference_rece(h64, e64, targets, n_buckets, n_buckets, 1, rounds, 7, torch.float32), h64, e64
    )
    assert got[0].dtype == torch.float32 and (got[1].dtype, got[2].dtype) == (torch.bfloat16, torch.bfloat16)
    assert abs(float(got[0]) - float(want[0])) <= 2**-9 * abs(float(want[0]))
    for grad, want_grad in zip(got[1:], want[1:], strict=True):
        assert torch.isfinite(grad).all()
        assert (grad.double() - want_grad).norm() <= 2**-5 * want_grad.norm()


@pytest.mark.parametrize("rounds", [1, 3])
@pytest.mark.parametrize("block_mib", [1e-3, 32.0])  # one item chunk per group, or whole rounds
def test_forward_and_backward_read_nothing_back_and_shape_nothing_by_values(rounds, block_mib):
    """No .item(), bool() or nonzero, no boolean indexing: on a GPU nothing waits for the device. (The base
    class's check of the target range is left out: ``compute`` is called directly.)"""
    hidden, item_emb, targets = make_problem(40, 300, dim=8)
    loss = rece(300, 0, n_buckets=6, n_extra_chunks=1, rounds=rounds, block_mib=block_mib)
    _, count = count_ops(lambda: torch.autograd.grad(loss.compute(hidden, item_emb, targets, None), (hidden, item_emb)))
    assert count.total > 0 and count.data_dependent == 0, dict(count.data_dependent_by_op)


@pytest.mark.parametrize(("n_positions", "num_items"), [(64, 500), (200, 3000)])
def test_a_block_holding_whole_rounds_launches_a_few_dozen_ops_a_round(n_positions, num_items):
    """With one group per round (a GPU's block), a forward+backward dispatches about 50 ops a round, whatever N
    and C: the budget that keeps RECE (3, 8) at N 8,192, C 173,511 under 600."""
    hidden, item_emb, targets = make_problem(n_positions, num_items, dim=8)
    for rounds in (1, 8):
        loss = rece(num_items, 0, n_extra_chunks=3, rounds=rounds, block_mib=2048)
        assert set(loss.plan(n_positions, 8, 8).group_chunks) == {loss.plan(n_positions, 8, 8).n_chunks}
        _, count = count_ops(
            lambda loss=loss: torch.autograd.grad(loss.compute(hidden, item_emb, targets, None), (hidden, item_emb))
        )
        assert count.total <= 80 + 50 * rounds, count.top(10)


def test_block_mib_none_is_the_devices_block_read_at_call_time(monkeypatch):
    asked = []

    def fake_block(device, budget_bytes=None):
        asked.append(torch.device(device))
        return 1 << 10

    hidden, item_emb, targets = make_problem(23, 41)
    auto = rece(41, 3, n_buckets=5, rounds=2)
    assert auto.block_mib is None
    assert auto.plan(23) == rece(41, 3, n_buckets=5, rounds=2, block_mib=32.0).plan(23)  # a CPU's 32 MiB
    want = rece(41, 3, n_buckets=5, rounds=2, block_mib=1 / 1024)(hidden, item_emb, targets)  # 1 KiB, given
    monkeypatch.setattr(loss_base, "working_block_bytes", fake_block)
    rece(41, 3, n_buckets=5, rounds=2, block_mib=1 / 1024)(hidden, item_emb, targets)
    assert asked == []  # an explicit block_mib wins
    assert torch.equal(auto(hidden, item_emb, targets), want)
    assert asked and set(asked) == {hidden.device}
    assert auto.plan(23, 8, 6, hidden.device).group_chunks == (1, 1)  # 1 KiB: one item chunk per group
