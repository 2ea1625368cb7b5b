"""opcount: the aten ops a callable dispatches, and which of them are data-dependent, on hand-counted callables."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rece_bench.opcount import OpCount, count_ops

X = torch.tensor([1.0, -1.0, 2.0])
MASK = X > 0
REPEATS = torch.tensor([1, 2, 0])


def test_counts_every_op_by_name_and_returns_the_result():
    result, count = count_ops(lambda: torch.ones(3) + 1)  # aten.ones, then aten.add
    assert torch.equal(result, torch.full((3,), 2.0))
    assert (count.total, count.data_dependent) == (2, 0)
    assert dict(count.by_op) == {"aten.ones": 1, "aten.add": 1}
    assert dict(count.data_dependent_by_op) == {}


@pytest.mark.parametrize(
    ("fn", "ops", "data_dependent"),
    [
        (lambda: X[MASK], {"aten.index": 1}, {"aten.index": 1}),  # boolean-mask indexing
        (lambda: X[torch.tensor([0, 2])], {"aten.lift_fresh": 1, "aten.index": 1}, {}),  # a long index: fixed shape
        (lambda: X.nonzero(), {"aten.nonzero": 1}, {"aten.nonzero": 1}),
        (lambda: torch.nonzero_static(X, size=3), {"aten.nonzero_static": 1}, {}),  # a fixed-size buffer
        (lambda: X.masked_select(MASK), {"aten.masked_select": 1}, {"aten.masked_select": 1}),
        (lambda: X.masked_fill(MASK, 0.0), {"aten.masked_fill": 1}, {}),  # a mask, not a selection
        (lambda: X.sum().item(), {"aten.sum": 1, "aten._local_scalar_dense": 1}, {"aten._local_scalar_dense": 1}),
        (
            lambda: bool(X.sum() > 0),
            {"aten.sum": 1, "aten.gt": 1, "aten._local_scalar_dense": 1},
            {"aten._local_scalar_dense": 1},
        ),
        (lambda: torch.unique(X), {"aten._unique2": 1}, {"aten._unique2": 1}),
        (
            lambda: X.repeat_interleave(REPEATS),
            {"aten.repeat_interleave": 1, "aten.index_select": 1},
            {"aten.repeat_interleave": 1},
        ),
        (
            lambda: X.repeat_interleave(REPEATS, output_size=3),
            {"aten.repeat_interleave": 1, "aten.index_select": 1},
            {},
        ),
        (
            lambda: X.clone().__setitem__(MASK, 0.0),
            {"aten.clone": 1, "aten.lift_fresh": 1, "aten.index_put_": 1},
            {"aten.index_put_": 1},
        ),  # boolean-mask assignment
    ],
    ids=[
        "bool-index",
        "long-index",
        "nonzero",
        "nonzero_static",
        "masked_select",
        "masked_fill",
        "item",
        "bool",
        "unique",
        "repeat_interleave",
        "repeat_interleave-output_size",
        "bool-assignment",
    ],
)
def test_data_dependent_ops_are_told_apart(fn, ops, data_dependent):
    _, count = count_ops(fn)
    assert dict(count.by_op) == ops
    assert dict(count.data_dependent_by_op) == data_dependent
    assert (count.total, count.data_dependent) == (sum(ops.values()), sum(data_dependent.values()))


def test_backward_is_counted_when_the_callable_runs_it():
    weight = torch.ones(3, requires_grad=True)
    _, forward = count_ops(lambda: (weight * 2).sum())
    _, both = count_ops(lambda: (weight * 2).sum().backward())
    assert dict(forward.by_op) == {"aten.mul": 1, "aten.sum": 1}
    assert both.total > forward.total and both.by_op["aten.mul"] == 2  # the backward's own product
    assert weight.grad is not None and torch.equal(weight.grad, torch.full((3,), 2.0))


def test_the_result_is_frozen_consistent_and_ranked():
    _, count = count_ops(lambda: torch.ones(3).add(1).add(2).mul(3))
    assert count.top(2) == [("aten.add", 2), ("aten.mul", 1)]
    assert count.to_dict() == {
        "total": 4,
        "data_dependent": 0,
        "by_op": {"aten.ones": 1, "aten.add": 2, "aten.mul": 1},
        "data_dependent_by_op": {},
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        count.total = 0  # type: ignore[misc]
    with pytest.raises(ValueError, match="sums"):
        OpCount(total=3, data_dependent=0, by_op={"aten.add": 2})
