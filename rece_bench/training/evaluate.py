"""Full-ranking evaluation over the whole catalogue, in chunks of users and of items.

It never holds a (users, items) score matrix for all users: a chunk of users is scored against a chunk of items at a
time, and only the count of items scoring at least as high as the target is kept. The rank of a target is
1 + the number of other non-excluded items with a score >= the target's (ties count against the model), and an
excluded target misses every cutoff: the same definition as ``metrics.target_ranks``.

Shape letters (U, C, Cb, D, S) as in ``docs/notation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rece_bench.data.loader import CSR, EvalSet
from rece_bench.device import compute_for
from rece_bench.training.metrics import DEFAULT_KS, EXCLUDED_RANK, metrics_from_ranks, standard_errors


@dataclass(frozen=True)
class Chunking:
    users: int = 512
    items: int = 65_536


def rank_targets(
    queries: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, exclude: CSR | None, chunking: Chunking
) -> torch.Tensor:
    """(U,) ranks of ``targets`` (0-based columns) for ``queries`` (U, D) against ``items`` (C, D).

    ``exclude`` holds 0-based columns per query row.
    """
    ranks = []
    for start in range(0, len(queries), chunking.users):
        rows = torch.arange(start, min(start + chunking.users, len(queries)))
        excluded = None if exclude is None else exclude.padded_rows(rows).to(queries.device)  # (U, S)
        ranks.append(_rank_user_chunk(queries[rows], items, targets[rows], excluded, chunking.items))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def _rank_user_chunk(
    queries: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    excluded: torch.Tensor | None,
    item_chunk: int,
) -> torch.Tensor:
    target_scores = (queries * items[targets]).sum(-1, keepdim=True)  # (U, D) * (U, D) -> (U, 1)
    target_excluded = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
    if excluded is not None:
        target_excluded = (excluded == targets[:, None]).any(dim=1)
    higher = torch.zeros(len(queries), dtype=torch.long, device=queries.device)
    for begin in range(0, len(items), item_chunk):
        end = min(begin + item_chunk, len(items))
        scores = queries @ items[begin:end].T  # (U, Cb)
        hidden = _chunk_mask(targets, excluded, begin, end)  # (U, Cb): the target itself and excluded items
        higher += ((scores >= target_scores) & ~hidden).sum(dim=1)
    beyond = torch.full_like(higher, EXCLUDED_RANK)
    return torch.where(target_excluded, beyond, higher + 1)


def _chunk_mask(targets: torch.Tensor, excluded: torch.Tensor | None, begin: int, end: int) -> torch.Tensor:
    columns = targets[:, None] if excluded is None else torch.cat([targets[:, None], excluded], dim=1)  # (U, 1+S)
    inside = (columns >= begin) & (columns < end)
    mask = torch.zeros(len(targets), end - begin + 1, dtype=torch.bool, device=targets.device)
    local = torch.where(inside, columns - begin, end - begin)  # out-of-chunk entries go to a spare column
    mask.scatter_(1, local, True)
    return mask[:, :-1]  # (U, Cb)


def _zero_based(exclude: CSR) -> CSR:
    return CSR(exclude.indptr, exclude.values - 1)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    eval_set: EvalSet,
    device: Any,
    chunking: Chunking = Chunking(),
    ks: tuple[int, ...] = DEFAULT_KS,
    step_done=None,
) -> dict[str, float]:
    """Metrics (and their standard errors) of a sequence model (``forward``, ``item_embeddings``) on a set.

    ``device``: a ``device.Compute`` (or a device, meaning fp32 there). The model's forward runs under the
    precision's autocast, as in training; the scores are computed in float32 with autocast off, so the target's
    score and every other item's are rounded alike (bf16 scores would tie far more often, and ties count against
    the model).
    """
    compute = compute_for(device)
    was_training = model.training
    model.eval()
    try:
        queries = []
        for start in range(0, len(eval_set), chunking.users):
            with compute.autocast():
                hidden = model(eval_set.inputs[start : start + chunking.users].to(compute.device))  # (U, L, D)
            queries.append(hidden[:, -1, :].float())  # the state after the last input item
            if step_done is not None:
                step_done()
        items = model.item_embeddings().float()
        query_table = torch.cat(queries) if queries else items.new_zeros(0, items.shape[1])
        ranks = rank_targets(
            query_table, items, eval_set.targets.to(compute.device) - 1, _zero_based(eval_set.exclude), chunking
        )
    finally:
        model.train(was_training)
    return with_errors(ranks.cpu(), ks)


def with_errors(ranks: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """The metrics and their standard errors over users (``ndcg@10`` and ``ndcg@10_se``, ...)."""
    return {**metrics_from_ranks(ranks, ks), **standard_errors(ranks, ks)}


def evaluate_popularity(
    item_counts: torch.Tensor,
    eval_set: EvalSet,
    chunking: Chunking = Chunking(),
    ks: tuple[int, ...] = DEFAULT_KS,
) -> dict[str, float]:
    """Metrics of ranking by training popularity (``item_counts`` (C,)), the same exclusions applied."""
    queries = torch.ones(len(eval_set), 1, dtype=torch.float64)  # score = 1 x count
    items = item_counts.double().view(-1, 1)  # (C,) -> (C, 1)
    ranks = rank_targets(queries, items, eval_set.targets - 1, _zero_based(eval_set.exclude), chunking)
    return with_errors(ranks, ks)
