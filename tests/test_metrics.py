import math

import pytest
import torch

from rece_bench.training.metrics import ranking_metrics, target_ranks


def test_hand_computed_ranks_and_metrics():
    # user 0: target 2 scores 0.9, beaten by column 0 (1.0)           -> rank 2
    # user 1: target 0 scores 0.5, beaten by 0.7, 0.6 and tied by 0.5 -> rank 4 (ties count against)
    # user 2: target 3 is the best                                    -> rank 1
    scores = torch.tensor(
        [[1.0, 0.1, 0.9, 0.2], [0.5, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4]],
    )
    targets = torch.tensor([2, 0, 3])
    assert target_ranks(scores, targets).tolist() == [2, 4, 1]
    m = ranking_metrics(scores, targets, ks=(1, 3, 10))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@3"] == pytest.approx(2 / 3)
    assert m["hr@10"] == pytest.approx(1.0)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1.0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5) + 1.0) / 3)


def test_default_keys():
    m = ranking_metrics(torch.rand(4, 20), torch.tensor([0, 1, 2, 3]))
    assert set(m) == {"ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10"}


def test_exclusion_as_lists_and_mask_agree_and_lift_the_rank():
    scores = torch.tensor([[1.0, 0.1, 0.9, 0.2], [0.5, 0.7, 0.6, 0.5]])
    targets = torch.tensor([2, 0])
    # excluding the items that beat the targets puts both first
    lists = [[0], [1, 2, 3]]
    mask = torch.tensor([[True, False, False, False], [False, True, True, True]])
    assert target_ranks(scores, targets, mask).tolist() == [1, 1]
    assert ranking_metrics(scores, targets, exclude=lists) == ranking_metrics(scores, targets, exclude=mask)
    assert ranking_metrics(scores, targets, exclude=lists)["ndcg@1"] == pytest.approx(1.0)


def test_an_excluded_target_misses_every_cutoff():
    scores = torch.tensor([[0.1, 0.9, 0.2]])
    m = ranking_metrics(scores, torch.tensor([1]), ks=(1, 5), exclude=[[1]])
    assert m == {"ndcg@1": 0.0, "ndcg@5": 0.0, "hr@1": 0.0, "hr@5": 0.0}


def test_constant_scores_rank_the_target_last():
    assert target_ranks(torch.zeros(1, 7), torch.tensor([3])).tolist() == [7]


def test_standard_errors_by_hand():
    from rece_bench.training.metrics import standard_errors

    ranks = torch.tensor([1, 3, 20, 2])  # HR@1 indicators 1, 0, 0, 0: mean 1/4, sample std sqrt(1/4)
    se = standard_errors(ranks, ks=(1,))
    assert se["hr@1_se"] == pytest.approx(0.5 / 2)
    gains = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert se["ndcg@1_se"] == pytest.approx(float(gains.std()) / 2)
