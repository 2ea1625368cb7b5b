import torch

from rece_bench.data.loader import CSR, EvalSet
from rece_bench.training.evaluate import Chunking, evaluate_popularity, rank_targets
from rece_bench.training.metrics import metrics_from_ranks, ranking_metrics, target_ranks


def _exclusions(n_users, n_items, gen):
    lists = [torch.randperm(n_items, generator=gen)[: int(torch.randint(0, 6, (1,), generator=gen))].tolist()
             for _ in range(n_users)]  # fmt: skip
    lengths = torch.tensor([len(x) for x in lists])
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    values = torch.tensor([v for x in lists for v in x], dtype=torch.long)
    return lists, CSR(indptr, values)


def test_chunked_ranks_equal_dense_ranks_with_exclusions():
    gen = torch.Generator().manual_seed(3)
    n_users, n_items, dim = 23, 41, 5
    queries = torch.randn(n_users, dim, generator=gen, dtype=torch.float64)
    items = torch.randn(n_items, dim, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, n_items, (n_users,), generator=gen)
    lists, csr = _exclusions(n_users, n_items, gen)
    lists[0].append(int(targets[0]))  # one excluded target
    csr = CSR(torch.cat([csr.indptr[:1], csr.indptr[1:] + 1]), torch.cat([csr.values[: csr.indptr[1]],
              targets[:1], csr.values[csr.indptr[1]:]]))  # fmt: skip
    mask = torch.zeros(n_users, n_items, dtype=torch.bool)
    for row, cols in enumerate(lists):
        mask[row, cols] = True
    dense = target_ranks(queries @ items.T, targets, mask)
    for chunking in (Chunking(users=4, items=7), Chunking(users=100, items=1000), Chunking(users=1, items=1)):
        assert rank_targets(queries, items, targets, csr, chunking).tolist() == dense.tolist()
    assert metrics_from_ranks(dense) == ranking_metrics(queries @ items.T, targets, exclude=lists)


def test_popularity_ranks_by_training_counts_and_excludes_inputs():
    counts = torch.tensor([10, 50, 30, 5])  # columns 0..3 = items 1..4
    eval_set = EvalSet(
        inputs=torch.tensor([[0, 2], [0, 1]]),
        targets=torch.tensor([3, 3]),  # item 3 (column 2): second most popular
        exclude=CSR(torch.tensor([0, 1, 2]), torch.tensor([2, 1])),  # user 0 saw item 2, user 1 saw item 1
    )
    m = evaluate_popularity(counts, eval_set, Chunking(users=1, items=2), ks=(1, 2))
    # user 0: item 2 (50) excluded -> target first; user 1: item 2 (50) beats it -> rank 2
    assert m["hr@1"] == 0.5 and m["hr@2"] == 1.0
