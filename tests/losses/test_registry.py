"""The registry, the description listing and the user errors for bad parameters and inputs."""

from __future__ import annotations

import pytest
import torch

from rece_bench.errors import UserError
from rece_bench.losses import LOSSES, LossBatch, build_loss, describe_losses

PAPER_LOSSES = {"ce", "ce_chunked", "ce_neg", "bce", "gbce", "rece"}


def test_registry_holds_every_loss_under_its_name_in_a_file_of_that_name():
    assert set(LOSSES) >= PAPER_LOSSES
    for name, cls in LOSSES.items():
        assert cls.__module__ == f"rece_bench.losses.{name}"  # one name everywhere: file and registry key
    for info in describe_losses():
        assert info.name in LOSSES and info.description
        for spec in info.params:
            assert spec.name and spec.type and spec.help
            assert spec.name != "generator"  # set by code, not listed for users


def test_unknown_loss_lists_the_known_ones():
    known = ", ".join(sorted(LOSSES))
    assert set(known.split(", ")) >= PAPER_LOSSES  # any other loss may sort between them
    with pytest.raises(UserError, match=f"unknown loss 'nosuch': choose one of {known}$"):
        build_loss("nosuch", num_items=10)


def test_unknown_parameter_is_named_with_the_allowed_ones():
    with pytest.raises(UserError, match="no parameter 'n_rounds'.*rounds"):
        build_loss("rece", num_items=10, n_rounds=2)


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("rece", {"n_extra_chunks": -1}, "n_extra_chunks must be >= 0, got -1"),
        ("rece", {"rounds": 0}, "rounds must be >= 1, got 0"),
        ("rece", {"n_buckets": 0}, "n_buckets must be >= 1, got 0"),
        ("rece", {"buckets_per_chunk": 0.0}, "buckets_per_chunk must lie in"),
        ("rece", {"rounds": 1.5}, "rounds must be an integer, got 1.5"),
        ("gbce", {"t": 1.5}, "t must lie in .*got 1.5"),
        ("bce", {"n_negatives": 0}, "n_negatives must be >= 1, got 0"),
        ("ce_neg", {"n_negatives": 11}, "n_negatives must be <= 10, got 11"),
        ("bce", {"n_negatives": 2, "generator": 3}, "generator must be a torch.Generator"),
    ],
)
def test_bad_parameters_name_the_parameter_and_value(name, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_loss(name, num_items=10, **params)


@pytest.mark.parametrize("name", sorted(PAPER_LOSSES))
def test_bad_inputs_are_user_errors(name):
    loss = build_loss(name, num_items=10, **({"n_negatives": 2} if name in {"bce", "gbce", "ce_neg"} else {}))
    hidden, item_emb = torch.randn(4, 3), torch.randn(10, 3)
    batch = LossBatch(torch.zeros(4, dtype=torch.long), torch.tensor([[1, 2, -1]]))
    with pytest.raises(UserError, match="targets must lie in \\[0, 10\\), got 10"):
        loss(hidden, item_emb, torch.tensor([0, 1, 2, 10]), batch)
    with pytest.raises(UserError, match="got -1"):
        loss(hidden, item_emb, torch.tensor([0, -1, 2, 3]), batch)
    with pytest.raises(UserError, match="D=3 but item_emb has D=5"):
        loss(hidden, torch.randn(10, 5), torch.tensor([0, 1, 2, 3]), batch)
    with pytest.raises(UserError, match="num_items=10"):
        loss(hidden, torch.randn(9, 3), torch.tensor([0, 1, 2, 3]), batch)


@pytest.mark.parametrize("name", ["bce", "ce_neg"])
def test_sampled_losses_that_need_a_batch_say_so(name):
    loss = build_loss(name, num_items=10, n_negatives=2)
    with pytest.raises(UserError, match="needs batch"):
        loss(torch.randn(4, 3), torch.randn(10, 3), torch.tensor([0, 1, 2, 3]))


def test_losses_without_sampling_ignore_batch():
    for name in ("ce", "ce_chunked", "gbce", "rece"):
        value = build_loss(name, num_items=10)(torch.randn(4, 3), torch.randn(10, 3), torch.tensor([0, 1, 2, 3]))
        assert torch.isfinite(value)


@pytest.mark.parametrize("name", sorted(PAPER_LOSSES))
def test_estimate_peak_bytes_is_positive_and_grows_with_positions(name):
    loss = build_loss(name, num_items=1000)
    assert 0 < loss.estimate_peak_bytes(64, 16) <= loss.estimate_peak_bytes(4096, 16)
