"""The ``kernel`` parameter of ce_chunked and rece through build_loss, under Triton's interpreter.

Run by test_wiring.py in a subprocess (see conftest.py); not collected itself. The Triton path must give the
torch path's loss and gradients on the same inputs (for RECE: the same generator seed, so the same rounds).
"""

from __future__ import annotations

import torch

from rece_bench.losses.base import build_loss
from tests.kernels.helpers import make_inputs


def _value_and_grads(loss, hidden, item_emb, targets):  # noqa: ANN001
    h, e = (x.detach().requires_grad_() for x in (hidden, item_emb))
    if getattr(loss, "generator", None) is not None:
        loss.generator.manual_seed(5)
    value = loss(h, e, targets)
    return (value.detach(), *torch.autograd.grad(value, (h, e)))


def _same(name: str, params: dict, n: int, c: int) -> None:
    hidden, item_emb, targets, _ = make_inputs(n, c, 16, torch.float32, seed=3)
    results = {}
    for kernel in ("torch", "triton"):
        extra = {"generator": torch.Generator()} if name == "rece" else {}
        loss = build_loss(name, c, kernel=kernel, **params, **extra)
        results[kernel] = _value_and_grads(loss, hidden, item_emb, targets)
    for what, got, want in zip(
        ("value", "grad hidden", "grad item_emb"), results["triton"], results["torch"], strict=True
    ):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m, w=what: f"{name} {w}: {m}")
    assert results["torch"][0] > 0


def ce_chunked_and_rece() -> None:
    from rece_bench.kernels import use_triton

    assert use_triton("ce_chunked", "triton", torch.device("cpu"))  # the interpreter counts as able to run
    assert not use_triton("ce_chunked", "auto", torch.device("cpu"))  # nothing measured faster on a CPU
    _same("ce_chunked", {}, n=60, c=75)
    _same("rece", {"n_buckets": 4, "n_extra_chunks": 1, "rounds": 3}, n=60, c=75)
    _same("rece", {"n_buckets": 3, "n_extra_chunks": 0, "rounds": 1}, n=50, c=40)
