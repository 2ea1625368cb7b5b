"""Ranking metrics of one target per user: pure functions of ranks and scores.

Rank of the target is 1 + the number of other items scoring at least as high (ties count against the model, so a
model that scores everything equally ranks every target last, never first). Excluded items score -inf; an excluded
target therefore misses every cutoff (rank ``EXCLUDED_RANK``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_KS = (1, 5, 10)
EXCLUDED_RANK = 2**62  # the rank of an excluded target: beyond every cutoff


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    return [f"ndcg@{k}" for k in ks] + [f"hr@{k}" for k in ks]


def _ndcg_gains(ranks: torch.Tensor, k: int) -> torch.Tensor:
    ranks = ranks.double()
    return torch.where(ranks <= k, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))


def ndcg_at_k(ranks: torch.Tensor, k: int) -> float:
    """Mean of 1/log2(rank + 1) over users whose 1-based rank is <= k (0 otherwise)."""
    return float(_ndcg_gains(ranks, k).mean()) if len(ranks) else 0.0


def hit_rate_at_k(ranks: torch.Tensor, k: int) -> float:
    return float((ranks <= k).double().mean()) if len(ranks) else 0.0


def standard_errors(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Standard error of each metric's mean over users (sample std / sqrt(U)): ``ndcg@10_se``, ``hr@10_se``."""
    if len(ranks) < 2:
        return {f"{name}_se": 0.0 for name in metric_names(ks)}
    out = {}
    for k in ks:
        out[f"ndcg@{k}_se"] = float(_ndcg_gains(ranks, k).std() / len(ranks) ** 0.5)
        out[f"hr@{k}_se"] = float((ranks <= k).double().std() / len(ranks) ** 0.5)
    return out


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    out = {f"ndcg@{k}": ndcg_at_k(ranks, k) for k in ks}
    out.update({f"hr@{k}": hit_rate_at_k(ranks, k) for k in ks})
    return out


def exclusion_mask(exclude: torch.Tensor | Sequence[Sequence[int]] | None, shape: tuple[int, int]) -> torch.Tensor:
    """A (U, C) bool mask from a mask or from per-user lists of column indices."""
    if exclude is None:
        return torch.zeros(shape, dtype=torch.bool)
    if isinstance(exclude, torch.Tensor):
        if exclude.shape != shape:
            raise ValueError(f"exclude mask has shape {tuple(exclude.shape)}, expected {shape}")
        return exclude.bool()
    mask = torch.zeros(shape, dtype=torch.bool)
    for row, columns in enumerate(exclude):
        mask[row, list(columns)] = True
    return mask


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(U,) 1-based ranks of targets (U,) among scores (U, C); exclude is an optional (U, C) bool mask."""
    scores = scores.double()
    if exclude is not None:
        scores = scores.masked_fill(exclude.to(scores.device), float("-inf"))
    target_scores = scores.gather(1, targets.long().view(-1, 1))  # (U, C) -> (U, 1)
    at_least = (scores >= target_scores).sum(dim=1)  # the target itself included
    # An excluded (-inf) target would tie with every excluded item; it misses every cutoff instead.
    beyond = torch.full_like(at_least, EXCLUDED_RANK)
    return torch.where(torch.isneginf(target_scores.squeeze(1)), beyond, at_least)


def ranking_metrics(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    exclude: torch.Tensor | Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """NDCG@k and HR@k for every k in ``ks``: keys ``ndcg@1`` ... ``hr@10``.

    scores (U, C), targets (U,) column indices, exclude an optional (U, C) bool mask or per-user lists of columns.
    """
    mask = None if exclude is None else exclusion_mask(exclude, tuple(scores.shape))
    return metrics_from_ranks(target_ranks(scores, targets, mask), ks)
