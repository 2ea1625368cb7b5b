"""Non-learned reference rankings, for scale beside the trained models."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from rece_bench.results import (
    Outcome,
    RunIdentity,
    RunResult,
    Scores,
    ensure_results_root,
    make_run_id,
    result_row,
    write_result,
)
from rece_bench.training.evaluate import evaluate_popularity


def popularity_run(dataset: str, data_root: Path, results_root: Path, max_len: int = 200) -> RunResult:
    """Rank every item by its training interaction count; evaluate on the test users like the models."""
    from rece_bench.data.loader import build_eval_set
    from rece_bench.data.store import read_dataset

    ensure_results_root(results_root)
    started = time.perf_counter()
    prepared = read_dataset(data_root, dataset)
    num_items = int(prepared.meta["num_items"])
    counts = torch.bincount(torch.as_tensor(prepared.train["item_id"].to_numpy().copy()) - 1, minlength=num_items)
    metrics = evaluate_popularity(counts, build_eval_set(prepared.test, max_len))
    params = {"max_len": max_len}
    identity = RunIdentity(make_run_id(dataset, "popularity", params, 0), dataset, "popularity", params, 0, "cpu")
    scores = Scores(metrics=metrics, train_time_s=time.perf_counter() - started)
    result = result_row(identity, Outcome("ok"), scores=scores)
    write_result(results_root, result)
    return result
