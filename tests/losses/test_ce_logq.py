"""ce_logq against a direct float64 formula on given negatives, its samplers' distributions, the exact unbiasedness
of its partition estimate, the effect of the correction on the gradient, its memory and its parameter checks."""

from __future__ import annotations

import math

import pytest
import torch

from rece_bench.errors import UserError
from rece_bench.losses import build_loss
from rece_bench.losses.ce_logq import draw_in_batch
from rece_bench.memory import PeakMemory
from tests.losses.helpers import assert_same, make_problem, value_and_grads

# Upper 0.1% point of the chi-square distribution with 9 degrees of freedom: 27.877 (NIST/SEMATECH e-Handbook of
# Statistical Methods, section 1.3.6.7.4, "Critical values of the chi-square distribution").
CHI2_9_999 = 27.877


def logq(num_items, counts, seed=0, **params):
    gen = torch.Generator().manual_seed(seed)
    return build_loss("ce_logq", num_items=num_items, item_counts=counts, generator=gen, **params)


def zipf_counts(num_items, power=1.0, top=1000):
    return (top / (torch.arange(num_items) + 1.0) ** power).round().long()  # (C,), the head far above the tail


def sampling_q(counts):
    weights = counts.double().clamp(min=0.5)  # an item with no interaction weighs half of one
    return weights / weights.sum()


def reference_logq(hidden, item_emb, targets, negatives, counts, correct_positive=False, corrected=True):
    """Per position: softmax over [positive, negatives that are not the positive], logits s_tj - log(K q_j)."""
    q, k = sampling_q(counts), len(negatives)
    total = 0.0
    for t in range(len(targets)):
        y = int(targets[t])
        kept = [int(j) for j in negatives if int(j) != y]
        shift = [math.log(k * float(q[j])) if corrected else 0.0 for j in kept]
        positive_shift = math.log(k * float(q[y])) if corrected and correct_positive else 0.0
        logits = item_emb[torch.tensor([y, *kept], dtype=torch.long)] @ hidden[t]
        logits = logits - torch.tensor([positive_shift, *shift], dtype=hidden.dtype)
        total = total + torch.logsumexp(logits, dim=0) - logits[0]
    return total / len(targets)


@pytest.mark.parametrize("correct_positive", [True, False])
@pytest.mark.parametrize("block_mib", [32.0, 1e-4])  # one block, or one position per block
@pytest.mark.parametrize(("n_positions", "num_items", "k"), [(23, 41, 30), (1, 9, 4), (17, 300, 5)])
def test_matches_reference_on_given_negatives(n_positions, num_items, k, correct_positive, block_mib):
    hidden, item_emb, targets = make_problem(n_positions, num_items, seed=k)
    counts = zipf_counts(num_items)
    counts[3] = 0  # a zero count: weighted as half an interaction
    loss = logq(num_items, counts, n_negatives=k, correct_positive=correct_positive, block_mib=block_mib)
    negatives = loss.sample_negatives(targets)
    negatives[0] = targets[0]  # the positive of position 0 is also drawn: its column must go
    negatives[-1] = 3
    got = value_and_grads(lambda: loss.loss_from_negatives(hidden, item_emb, targets, negatives), hidden, item_emb)
    want = value_and_grads(
        lambda: reference_logq(hidden, item_emb, targets, negatives, counts, correct_positive), hidden, item_emb
    )
    assert_same(got, want, tol=1e-10)


@pytest.mark.parametrize("sampler", ["popularity", "in_batch"])
def test_forward_draws_then_scores_like_the_reference(sampler):
    hidden, item_emb, targets = make_problem(31, 57, seed=3)
    counts = zipf_counts(57)
    loss = logq(57, counts, seed=8, n_negatives=12, sampler=sampler)
    got = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    loss.generator.manual_seed(8)
    negatives = loss.sample_negatives(targets)
    assert negatives.shape == (12,)
    if sampler == "in_batch":
        assert set(negatives.tolist()) <= set(targets.tolist())
    want = value_and_grads(lambda: reference_logq(hidden, item_emb, targets, negatives, counts), hidden, item_emb)
    assert_same(got, want, tol=1e-10)


def test_popularity_draws_follow_the_counts_chi_square():
    """20,000 draws over 10 items with counts 0..512 (the zero count weighted 1/2): Pearson's statistic against
    the expected counts, 9 degrees of freedom, must stay under the 0.1% critical value; the same draws against
    the counts of two items swapped must be rejected (the test has power)."""
    assert torch.special.gammaincc(torch.tensor(4.5), torch.tensor(CHI2_9_999 / 2)).item() == pytest.approx(1e-3, 1e-3)
    counts = torch.tensor([512, 256, 128, 64, 32, 16, 8, 4, 1, 0])
    loss = logq(10, counts, seed=123, n_negatives=20_000)
    observed = torch.bincount(loss.sample_negatives(torch.zeros(1, dtype=torch.long)), minlength=10).double()

    def pearson(q):
        expected = 20_000 * q
        assert expected.min() >= 5  # the chi-square approximation's usual condition
        return float(((observed - expected) ** 2 / expected).sum())

    q = sampling_q(counts)
    assert pearson(q) < CHI2_9_999
    assert pearson(q[[1, 0, *range(2, 10)]]) > 10 * CHI2_9_999


def test_in_batch_draws_distinct_positions_uniformly():
    targets = torch.arange(12)  # distinct targets: an id is its position
    assert torch.equal(draw_in_batch(targets, 12, None), targets) and torch.equal(
        draw_in_batch(targets, 50, None), targets
    )
    gen = torch.Generator().manual_seed(4)
    draws = torch.stack([draw_in_batch(targets, 4, gen) for _ in range(3000)])  # (3000, 4)
    assert all(len(set(row)) == 4 for row in draws.tolist())  # without replacement
    observed = torch.bincount(draws.view(-1), minlength=12).double()
    expected = 3000 * 4 / 12
    # Positions within a draw are distinct, so each position's count is binomial(3000, 4/12), its variance
    # (N - k) / (N - 1) = 8/11 of what Pearson's statistic assumes: conservative. 11 dof, 0.1% point 31.264 (NIST)
    assert float(((observed - expected) ** 2 / expected).sum()) < 31.264


@pytest.mark.parametrize("correct_positive", [False, True])
def test_partition_estimate_is_exactly_unbiased(correct_positive):
    """With the positive's draws removed, exp(s_y - b_y) + sum_k exp(s_jk) / (K q_jk) has expectation
    exp(s_y - b_y) + sum_{j != y} exp(s_j) exactly, at any K: b_y = 0 (correct_positive False) makes it the full
    partition function; Yi et al.'s b_y = log(K q_y) weighs the positive by 1 / (K q_y) instead. The loss of one
    position is log of that estimate minus (s_y - b_y), so exp(loss + s_y - b_y) is the estimate itself. The
    mean over 4,000 draws must lie within 4 measured standard errors of the exact value."""
    hidden, item_emb, targets = make_problem(1, 30, seed=5)
    hidden, item_emb = hidden.detach(), item_emb.detach()
    counts = zipf_counts(30, power=1.5)
    q, k, y = sampling_q(counts), 16, int(targets[0])
    loss = logq(30, counts, seed=2, n_negatives=k, correct_positive=correct_positive)
    s = (item_emb @ hidden[0]).double()  # (C,)
    b_y = math.log(k * float(q[y])) if correct_positive else 0.0
    exact = math.exp(float(s[y]) - b_y) + float(s.exp().sum() - s[y].exp())
    with torch.no_grad():
        estimates = torch.tensor(
            [math.exp(float(loss(hidden, item_emb, targets)) + float(s[y]) - b_y) for _ in range(4000)]
        )
    standard_error = float(estimates.std()) / math.sqrt(len(estimates))
    assert abs(float(estimates.mean()) - exact) < 4 * standard_error
    assert standard_error < 0.05 * exact  # the bound is tight enough to mean something


def uncorrected_loss(hidden, item_emb, targets, negatives):
    """Plain sampled softmax on the same negatives, the positive's draws removed, no logQ correction."""
    positive = (hidden * item_emb[targets]).sum(1, keepdim=True)  # (N, 1)
    logits = (hidden @ item_emb[negatives].T).masked_fill(targets[:, None] == negatives[None, :], -torch.inf)
    return (torch.logsumexp(torch.cat([positive, logits], dim=1), dim=1) - positive[:, 0]).mean()


def test_corrected_mean_gradient_approaches_full_ce_and_uncorrected_does_not():
    """Mean gradient (w.r.t. hidden and item_emb) over 1,000 draws against the full-softmax gradient: C 20 items
    under Zipf popularity (power 1.5), K 100 or 1,000 draws with replacement, the same seeds every run.

    logQ-corrected sampled softmax without the positive's correction is consistent but biased at finite K (the log
    of an unbiased partition estimate), the bias falling like 1/K; without any correction the softmax tends to a
    popularity-weighted one (no K removes it); Yi et al.'s variant (positive corrected too) weighs the positive by
    1 / (K q_y), an error that does not vanish either. Measured (norm of the error of the mean gradient, and the
    Monte-Carlo standard error of the mean, norm over components): uncorrected 0.465 (SE 0.004); consistent 0.220
    (SE 0.019) at K 100 and 0.018 (SE 0.005) at K 1,000, 12x smaller where 1/K predicts 10x; Yi et al.'s 0.167 (SE
    0.005). Each assertion keeps a margin of at least two standard errors on both sides of its inequality."""
    hidden, item_emb, targets = make_problem(3, 20, dim=4, seed=0)
    counts = zipf_counts(20, power=1.5)
    full = value_and_grads(lambda: torch.nn.functional.cross_entropy(hidden @ item_emb.T, targets), hidden, item_emb)
    full_grad = torch.cat([full[1].view(-1), full[2].view(-1)])

    def mean_gradient_error(k, correct_positive, corrected=True, draws=1000):
        loss = logq(20, counts, seed=k, n_negatives=k, correct_positive=correct_positive)
        grads = []
        for _ in range(draws):
            negatives = loss.sample_negatives(targets)
            if corrected:
                value = loss.loss_from_negatives(hidden, item_emb, targets, negatives)
            else:
                value = uncorrected_loss(hidden, item_emb, targets, negatives)
            grads.append(torch.cat([g.view(-1) for g in torch.autograd.grad(value, (hidden, item_emb))]))
        grads = torch.stack(grads)  # (draws, N D + C D)
        return float((grads.mean(0) - full_grad).norm()), float(grads.std(0).norm()) / math.sqrt(draws)

    uncorrected, uncorrected_se = mean_gradient_error(1000, True, corrected=False)
    consistent_100, _ = mean_gradient_error(100, False)
    consistent, consistent_se = mean_gradient_error(1000, False)
    standard, _ = mean_gradient_error(1000, True)
    assert uncorrected > 50 * uncorrected_se  # a bias, not noise
    assert consistent < uncorrected / 10
    assert consistent_100 > 5 * consistent  # falls with K, close to 1/K
    assert consistent < 0.03  # 1/K from K 100 predicts 0.022, plus two standard errors
    assert consistent_se < standard / 30 and 5 * consistent < standard < uncorrected / 2


def test_every_column_removed_gives_zero_loss_and_gradient():
    """in_batch with one target for the whole batch: every column is some position's positive, so only the
    positive is left in each softmax."""
    hidden, item_emb, _ = make_problem(9, 15, seed=1)
    targets = torch.full((9,), 4)
    loss = logq(15, zipf_counts(15), n_negatives=5, sampler="in_batch")
    value, grad_hidden, grad_items = value_and_grads(lambda: loss(hidden, item_emb, targets), hidden, item_emb)
    assert value == 0 and grad_hidden.abs().max() == 0 and grad_items.abs().max() == 0


def test_float32_large_logits_finite_and_close():
    hidden, item_emb, targets = make_problem(13, 50, scale=30.0)
    h32 = hidden.detach().float().requires_grad_()
    e32 = item_emb.detach().float().requires_grad_()
    counts = zipf_counts(50)
    loss = logq(50, counts, n_negatives=20)
    negatives = loss.sample_negatives(targets)
    got = value_and_grads(lambda: loss.loss_from_negatives(h32, e32, targets, negatives), h32, e32)
    want = value_and_grads(lambda: reference_logq(hidden, item_emb, targets, negatives, counts), hidden, item_emb)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, atol=1e-3, rtol=1e-4)


def test_peak_memory_is_a_block_of_logits_not_n_by_k():
    """N 2,048 positions and K 4,096 negatives in float32: the (N, K) logits are 33.5 MB, and autograd on them
    would hold several copies. Beyond the inputs and their gradients, the peak must stay near one block (4 MiB
    here, with its exp and mask) plus the (K, D) gathered rows and their gradient."""
    n_positions, num_items, dim, k = 2048, 50_000, 64, 4096
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n_positions, dim, generator=gen).requires_grad_()
    item_emb = (torch.randn(num_items, dim, generator=gen) / 4).requires_grad_()
    targets = torch.randint(0, num_items, (n_positions,), generator=gen)
    loss = logq(num_items, zipf_counts(num_items), n_negatives=k, block_mib=4.0)
    with PeakMemory("cpu", track=(hidden, item_emb, targets, loss.log_q, loss.cumulative)) as meter:
        loss(hidden, item_emb, targets).backward()
    gradients = (n_positions + num_items) * dim * 4
    beyond = meter.stats.peak_delta_bytes - gradients
    assert 0 < beyond <= 4 * (1 << 20) + 3 * k * dim * 4 + (1 << 20)
    assert meter.stats.peak_delta_bytes <= loss.work_bytes(n_positions, dim, 4) + gradients


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"item_counts": torch.ones(9)}, r"item_counts must be a \(C,\) tensor with C=10 .*got shape \(9,\)"),
        ({"item_counts": -torch.ones(10)}, "item_counts must be finite and >= 0"),
        ({"item_counts": torch.full((10,), math.nan)}, "item_counts must be finite and >= 0"),
        ({"item_counts": torch.zeros(10)}, "item_counts sums to 0"),
        ({"n_negatives": 0}, "n_negatives must be >= 1, got 0"),
        ({"sampler": "uniform"}, "sampler must be one of 'popularity', 'in_batch', got 'uniform'"),
        ({"correct_positive": "yes"}, "correct_positive must be True or False, got 'yes'"),
        ({"block_mib": 0.0}, "block_mib must lie in"),
        ({"generator": 3}, "generator must be a torch.Generator"),
    ],
)
def test_bad_parameters_are_user_errors(params, pattern):
    with pytest.raises(UserError, match=pattern):
        build_loss("ce_logq", num_items=10, **{"item_counts": torch.ones(10), **params})


def test_it_cannot_be_built_without_counts():
    with pytest.raises(UserError, match="ce_logq needs item_counts: pass item_counts="):
        build_loss("ce_logq", num_items=10, n_negatives=4)


def test_facts_reach_the_listing_the_budget_and_the_trainer():
    from typer.testing import CliRunner

    from rece_bench.budget.ladder import ladder_for, usable_candidates
    from rece_bench.cli import app
    from rece_bench.losses.base import LOSSES, ordered_losses

    listing = CliRunner().invoke(app, ["losses"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "ce_logq" in listing.output and "item_counts" in listing.output
    candidates = ladder_for("ce_logq").candidates()
    assert candidates[0].label() == "batch 256, k 4096" and candidates[-1].label() == "batch 4, k 64"
    assert len(usable_candidates("ce_logq", candidates, num_items=100)) == len(candidates)  # K may exceed C
    names = [cls.name for cls in ordered_losses()]
    assert names.index("ce_neg") < names.index("ce_logq") < names.index("ce")  # report_rank 35
    assert LOSSES["ce_logq"].data_inputs == ("item_counts",)


@pytest.mark.parametrize("sampler", ["popularity", "in_batch"])
def test_trains_with_the_counts_the_trainer_fills(tiny_data_root, tiny_config, tmp_path, sampler):
    """The trainer builds the loss with the training split's item_counts (data_inputs) and a run completes."""
    from rece_bench.training.driver import train_run

    params = {"n_negatives": 16, "sampler": sampler}
    result = train_run(tiny_config(loss="ce_logq", loss_params=params, epochs=1), tiny_data_root, tmp_path)
    assert result.status == "ok" and math.isfinite(result.history[0]["loss"]) and result.metrics["ndcg@10"] > 0
