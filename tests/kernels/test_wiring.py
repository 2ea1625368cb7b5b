"""The ``kernel`` parameter of ce_chunked and rece: choices, errors and the log line, and (in a subprocess under
Triton's interpreter) the Triton path through build_loss against the torch path."""

from __future__ import annotations

import logging

import pytest
import torch

import rece_bench.kernels as kernels
from rece_bench.errors import UserError
from rece_bench.losses.base import build_loss


def test_triton_path_matches_torch_path(interpreted) -> None:
    interpreted("checks_wiring:ce_chunked_and_rece")


@pytest.mark.parametrize("name", ["ce_chunked", "rece"])
def test_bad_kernel_is_refused(name: str) -> None:
    with pytest.raises(UserError, match="kernel must be one of"):
        build_loss(name, 10, kernel="cuda")


@pytest.mark.parametrize("name", ["ce_chunked", "rece"])
def test_triton_on_cpu_without_interpreter_names_the_fix(name: str, monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    loss = build_loss(name, 10, kernel="triton")
    installed = kernels.importlib.util.find_spec("triton") is not None
    fix = "--device cuda.*TRITON_INTERPRET=1" if installed else r"pip install 'rece-bench\[kernels\]'"
    with pytest.raises(UserError, match=fix):
        loss(torch.randn(4, 8), torch.randn(10, 8), torch.tensor([1, 2, 3, 4]))


def test_auto_runs_torch_on_cpu() -> None:
    hidden, item_emb, targets = torch.randn(6, 8), torch.randn(10, 8), torch.tensor([0, 1, 2, 3, 4, 9])
    auto = build_loss("ce_chunked", 10)(hidden, item_emb, targets)
    torch.testing.assert_close(auto, build_loss("ce_chunked", 10, kernel="torch")(hidden, item_emb, targets))
    assert build_loss("rece", 10).kernel == "auto"
    assert not kernels.use_triton("rece", "auto", torch.device("cpu"))


def test_without_triton_auto_says_so_once_and_triton_names_the_install(monkeypatch, caplog) -> None:
    real = kernels.importlib.util.find_spec
    monkeypatch.setattr(kernels.importlib.util, "find_spec", lambda name: None if name == "triton" else real(name))
    monkeypatch.setattr(kernels, "_SAID", set())
    with caplog.at_level(logging.INFO, logger="rece_bench.kernels"):
        assert not kernels.use_triton("ce_chunked", "auto", torch.device("cuda"))
        assert not kernels.use_triton("rece", "auto", torch.device("cuda"))
    assert [r.getMessage() for r in caplog.records] == [
        "the losses run their torch paths (triton is not installed: pip install 'rece-bench[kernels]')"
    ]
    with pytest.raises(UserError, match=r"pip install 'rece-bench\[kernels\]'"):
        kernels.use_triton("rece", "triton", torch.device("cuda"))


def test_bench_loss_takes_the_kernel_parameter() -> None:
    from rece_bench.bench.loss import parse_param

    assert parse_param("ce_chunked.kernel=triton") == ("ce_chunked", "kernel", "triton")
    assert parse_param("rece.kernel=torch") == ("rece", "kernel", "torch")
