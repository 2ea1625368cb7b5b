"""Every loss in reduced precision: under autocast with float32 inputs, and with bf16 or fp16 inputs.

CPU kernels promote mixed dtypes where CUDA kernels refuse them (GPU.md: ce_chunked's mm, rece's in-place call,
sce's index_add_ all failed on an H200 under autocast and passed here). So the runs below go through
``StrictDtypes``, a dispatch mode that refuses what CUDA refuses: a matrix product, an index op with a source
(index_add, index_put, scatter, ...) or any in-place / ``out=`` op whose floating tensors are not all of one dtype
(``copy_`` excepted: converting is its job). A loss that passes here meets no mixed-dtype kernel on a GPU either.

Inputs are multiples of 1/64 below 2 in magnitude: exact in bf16, fp16 and fp32, so the float32 run, the autocast
run and the bf16 / fp16 runs see the same numbers and differ only in how they compute.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from rece_bench.losses import LOSSES, LossBatch, build_loss
from rece_bench.losses import base as loss_base
from rece_bench.losses.base import Loss, lookup, register

# ---------------------------------------------------------------- a CPU that refuses mixed dtypes as CUDA does

_PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "mv", "addmv", "dot", "vdot", "linear", "addr"}
_WITH_SOURCE = {"index_add", "index_copy", "index_put", "scatter", "scatter_add", "scatter_reduce", "masked_scatter",
                "index_reduce", "put", "searchsorted"}  # fmt: skip
_RANDOM = {"rand", "randn", "randint", "randperm", "normal", "uniform", "random", "bernoulli", "multinomial",
           "exponential", "geometric", "cauchy", "log_normal", "poisson"}  # fmt: skip


class StrictDtypes(TorchDispatchMode):
    """Refuses mixed floating dtypes where CUDA does; records every random draw and every host read."""

    def __init__(self) -> None:
        super().__init__()
        self.draws: list[torch.Tensor] = []
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__.rstrip("_")
        if name in _PRODUCTS or name in _WITH_SOURCE or (func._schema.is_mutable and name != "copy"):
            floats = {
                t.dtype for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.is_floating_point()
            }
            if len(floats) > 1:
                raise AssertionError(f"{func} mixes {sorted(map(str, floats))}: CUDA refuses this")
        out = func(*args, **kwargs)
        if name in _RANDOM:
            self.draws.append((args[0] if func._schema.is_mutable else out).detach().clone())
        if name == "_local_scalar_dense":
            self.host_reads += 1
        return out


def test_strict_dtypes_refuses_what_cuda_refuses():
    a, b = torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bfloat16)
    with StrictDtypes():
        a.add_(a)  # one dtype: fine
        a.copy_(b)  # a conversion: fine
        with pytest.raises(AssertionError, match="CUDA refuses"):
            torch.mm(a, b)
        with pytest.raises(AssertionError, match="CUDA refuses"):
            a.index_add_(0, torch.tensor([0, 1]), b)
        with pytest.raises(AssertionError, match="CUDA refuses"):
            torch.logaddexp(a, b, out=a)


# ---------------------------------------------------------------- problems

SMALL_PARAMS = {"n_negatives": 5, "n_buckets": 4, "n_extra_chunks": 1, "rounds": 3, "block_mib": 1e-3}
N_POSITIONS, NUM_ITEMS, DIM, SEQ_LEN = 48, 300, 16, 12


def _exact(shape, gen: torch.Generator, bound: int = 96) -> torch.Tensor:
    """float32 multiples of 1/64 in [-1.5, 1.5]: exact in bf16 (8 significant bits) and fp16."""
    return torch.randint(-bound, bound + 1, shape, generator=gen).float() / 64


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hidden = _exact((N_POSITIONS, DIM), gen)
    item_emb = _exact((NUM_ITEMS, DIM), gen)
    targets = torch.randint(0, NUM_ITEMS, (N_POSITIONS,), generator=gen)
    seq_index = torch.arange(N_POSITIONS) // SEQ_LEN  # (N,)
    seen = targets.view(-1, SEQ_LEN)  # (B, S): each user has seen its own targets
    return hidden, item_emb, targets, LossBatch(seq_index, seen)


def _build(name: str, extra: dict | None = None) -> Loss:
    """The loss with small parameters, a seeded generator and its data inputs."""
    names = {spec.name for spec in lookup(name).params}
    params = {key: value for key, value in {**SMALL_PARAMS, **(extra or {})}.items() if key in names}
    if "generator" in names:
        params["generator"] = torch.Generator().manual_seed(1)
    if "item_counts" in lookup(name).data_inputs:
        params["item_counts"] = torch.arange(NUM_ITEMS) % 7
    return build_loss(name, num_items=NUM_ITEMS, **params)


def _run(name: str, dtype: torch.dtype, autocast: torch.dtype | None, params: dict | None = None):
    """Value, gradients and draws of one strict forward+backward; inputs in ``dtype``, under ``autocast``."""
    hidden, item_emb, targets, batch = _problem()
    hidden, item_emb = hidden.to(dtype).requires_grad_(), item_emb.to(dtype).requires_grad_()
    loss = _build(name, params)
    with StrictDtypes() as mode, torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        value = loss(hidden, item_emb, targets, batch)
        grads = torch.autograd.grad(value, (hidden, item_emb))
    return value.detach(), grads, mode.draws


def _same_draws(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    """The same random draws: ids exactly, floating draws to the rounding of the run's dtype."""
    assert len(got) == len(want) and len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        if a.is_floating_point():
            ulp = torch.finfo(a.dtype).eps
            torch.testing.assert_close(a.double(), b.double(), rtol=ulp, atol=ulp)
        else:
            assert torch.equal(a, b)


# Why these tolerances, with u the unit roundoff (bf16 keeps 8 significant bits, u = 2^-9; fp16 11, u = 2^-12).
# Only the products' outputs are rounded; every sum after them is float32. A logit s moves by up to u |s| (|s| up to
# about 12 here) and each gradient entry by u at its final cast; a position's loss is a weighted mean of its
# logits, and over 48 positions and hundreds of items the errors have random signs. Measured (float32 as the
# reference): value within 2.5e-4 in bf16 and 4e-5 in fp16, gradients within 5.2e-3 and 5.8e-4 (relative
# Frobenius). So: value 2 u, gradients 8 u. A bf16 accumulator breaks both (ce_chunked summing its log-sum-exp in
# bf16 was 5% off). RECE and SCE also choose candidates from rounded projections, where a near tie can fall the
# other way and swap a candidate (and RECE keeps its own sums in the inputs' dtype): 4 times as much (RECE measured
# 2.3e-3 and 1.9e-2 in bf16).
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-9, torch.float16: 2.0**-12}
BUCKETED = {"rece", "sce"}
CASES = [
    pytest.param(torch.float32, torch.bfloat16, id="autocast-bf16"),
    pytest.param(torch.bfloat16, None, id="bf16-inputs"),
    pytest.param(torch.float32, torch.float16, id="autocast-fp16"),
    pytest.param(torch.float16, None, id="fp16-inputs"),  # torch 2.13's CPU has fp16 kernels for all of these ops
]
LOSS_CASES = [pytest.param(name, {}, id=name) for name in sorted(LOSSES)]
LOSS_CASES.append(pytest.param("rece", {"rounds": 1}, id="rece-one-round"))  # its other streamed path


@pytest.mark.parametrize(("dtype", "autocast"), CASES)
@pytest.mark.parametrize(("name", "params"), LOSS_CASES)
def test_every_loss_in_reduced_precision_matches_its_float32_value(name, params, dtype, autocast):
    reason = LOSSES[name].unavailable_reason("cpu", "fp32")
    if reason is not None:  # cce, liger_ce: GPU kernels (test_cuda.py and losses/test_kernels_libs.py check them)
        pytest.skip(f"{name}: {reason}")
    want, want_grads, want_draws = _run(name, torch.float32, None, params)
    value, grads, draws = _run(name, dtype, autocast, params)
    u = UNIT_ROUNDOFF[autocast or dtype] * (4 if name in BUCKETED else 1)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert abs(float(value) - float(want)) <= 2 * u * abs(float(want)), (float(value), float(want))
    for grad, want_grad in zip(grads, want_grads, strict=True):
        assert grad.dtype == dtype and torch.isfinite(grad).all()
        error = (grad.double() - want_grad.double()).norm() / want_grad.double().norm()
        assert error <= 8 * u, float(error)
    if want_draws:  # sampled losses draw the same negatives or directions in every precision
        _same_draws(draws, want_draws)


# ---------------------------------------------------------------- exact CE over many blocks in bf16


def test_chunked_ce_in_bf16_over_many_blocks_keeps_float64_value_and_gradients():
    """C 100,000, N 512, D 64, 1 MiB blocks (about 400 of them), bench-loss's inputs (seed 0, logit std 2): a bf16
    running log-sum-exp gave 12.81 here, float64 13.51.

    Tolerance: the value within 1% (measured 2e-6). Gradients: every entry is cast to bf16 at the end (up to
    2^-9 relatively), and each logit, rounded to bf16 by the product, moves its softmax weight by up to about
    |s| 2^-9 (|s| up to 9 here, so 2%); summed over 512 positions or 100,000 items those errors average out.
    Measured: 1.7e-3 relative (Frobenius) and 0.3% of the largest entry at worst. Allowed: 2^-8 and 2^-6.
    """
    gen = torch.Generator().manual_seed(0)
    n, c, d = 512, 100_000, 64
    hidden = torch.randn(n, d, generator=gen).bfloat16()
    item_emb = (torch.randn(c, d, generator=gen) * (2 / d**0.5)).bfloat16()
    targets = torch.randint(0, c, (n,), generator=gen)
    exact_h, exact_e = hidden.double().requires_grad_(), item_emb.double().requires_grad_()
    want = F.cross_entropy(exact_h @ exact_e.T, targets)  # (N, D) x (D, C) -> (N, C)
    want_grads = torch.autograd.grad(want, (exact_h, exact_e))
    hidden.requires_grad_(), item_emb.requires_grad_()
    with StrictDtypes():
        value = build_loss("ce_chunked", num_items=c, block_mib=1)(hidden, item_emb, targets)
        grads = torch.autograd.grad(value, (hidden, item_emb))
    assert value.dtype == torch.float32
    got, exact = float(value.detach()), float(want.detach())
    assert abs(got - exact) <= 0.01 * exact, (got, exact)
    for grad, want_grad in zip(grads, want_grads, strict=True):
        assert grad.dtype == torch.bfloat16
        error = grad.double() - want_grad
        assert error.norm() <= 2**-8 * want_grad.norm()
        assert error.abs().max() <= 2**-6 * want_grad.abs().max()


# ---------------------------------------------------------------- one compute dtype, autocast off inside


class _Recorder(Loss):
    """A toy loss that records what ``compute`` sees."""

    name = "test_dtype_recorder"
    seen: list

    def compute(self, hidden, item_emb, targets, batch):
        self.seen.append((hidden.dtype, item_emb.dtype, torch.is_autocast_enabled("cpu")))
        return (hidden @ item_emb.T).logsumexp(dim=1).mean()  # (N, D) x (D, C) -> (N, C) -> (N,)


@pytest.fixture
def recorder():
    register(_Recorder)
    try:
        loss = build_loss("test_dtype_recorder", num_items=7)
        loss.seen = []
        yield loss
    finally:
        del LOSSES["test_dtype_recorder"]


@pytest.mark.parametrize(
    ("hidden_dtype", "item_dtype", "autocast", "want"),
    [
        (torch.float32, torch.bfloat16, None, torch.float32),  # no autocast: the wider dtype
        (torch.float16, torch.bfloat16, None, torch.float32),  # neither holds the other: promoted
        (torch.bfloat16, torch.float32, torch.bfloat16, torch.bfloat16),  # autocast: its dtype
        (torch.float32, torch.float32, torch.float16, torch.float16),
        (torch.float64, torch.float32, torch.bfloat16, torch.float64),  # autocast leaves float64 alone
    ],
)
def test_mixed_inputs_reach_compute_in_one_dtype_with_autocast_off(recorder, hidden_dtype, item_dtype, autocast, want):
    hidden = torch.randn(5, 3).to(hidden_dtype).requires_grad_()
    item_emb = torch.randn(7, 3).to(item_dtype).requires_grad_()
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        value = recorder(hidden, item_emb, torch.tensor([0, 1, 2, 3, 4]))
    assert recorder.seen == [(want, want, False)]
    assert value.dtype == (torch.float64 if want == torch.float64 else torch.float32)
    grad_hidden, grad_items = torch.autograd.grad(value, (hidden, item_emb))
    assert (grad_hidden.dtype, grad_items.dtype) == (hidden_dtype, item_dtype)  # each input's own dtype


@pytest.mark.parametrize("name", ["ce_chunked", "ce_logq", "sce", "bce"])
def test_backward_called_under_autocast_still_runs_in_the_forward_precision(name):
    """On CPU the backward runs in the caller's thread, under the caller's autocast: custom_bwd puts the forward's
    state (autocast off) back, so float32 inputs get the same float32 gradients as outside autocast."""
    hidden, item_emb, targets, batch = _problem()
    grads = []
    for autocast in (False, True):
        h, e = hidden.clone().requires_grad_(), item_emb.clone().requires_grad_()
        value = _build(name)(h, e, targets, batch)
        with StrictDtypes(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            grads.append(torch.autograd.grad(value, (h, e)))
    for got, want in zip(*grads, strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)


# ---------------------------------------------------------------- no host synchronisation per call on a GPU

SYNC_FREE_LOSSES = ["ce", "ce_chunked", "ce_logq", "gbce", "sce"]  # nothing in their step reads a value back


@pytest.mark.parametrize("name", SYNC_FREE_LOSSES)
def test_on_a_gpu_the_input_values_are_read_on_the_first_call_only(name, monkeypatch):
    """With CPU taken for a device where reading a value syncs (the CUDA path, the predicate patched), the first
    call reads the target range and every later forward+backward reads nothing back: no ``.item()``, ``int()`` or
    ``bool()`` of a tensor (each dispatches ``aten._local_scalar_dense``, counted here)."""
    monkeypatch.setattr(loss_base, "SYNC_FREE_DEVICE_TYPES", ())
    hidden, item_emb, targets, batch = _problem()
    hidden.requires_grad_(), item_emb.requires_grad_()
    loss = _build(name)
    reads = []
    for _ in range(3):
        with StrictDtypes() as mode:
            torch.autograd.grad(loss(hidden, item_emb, targets, batch), (hidden, item_emb))
        reads.append(mode.host_reads)
    assert reads[0] > 0 and reads[1:] == [0, 0]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_on_a_gpu_the_checks_read_values_once_and_still_catch_a_bad_first_batch(name, monkeypatch):
    monkeypatch.setattr(loss_base, "SYNC_FREE_DEVICE_TYPES", ())
    hidden, item_emb, targets, batch = _problem()
    loss = _build(name)
    with pytest.raises(loss_base.UserError, match="targets must lie in"):
        loss.check_call(hidden, item_emb, targets + NUM_ITEMS, batch)
    reads = []
    for _ in range(3):
        with StrictDtypes() as mode:
            loss.check_call(hidden, item_emb, targets, batch)
        reads.append(mode.host_reads)
    assert reads[0] > 0 and reads[1:] == [0, 0]


def test_on_cpu_every_call_checks_the_values():
    hidden, item_emb, targets, _ = _problem()
    loss = build_loss("ce", num_items=NUM_ITEMS)
    loss(hidden, item_emb, targets)
    with pytest.raises(loss_base.UserError, match=f"got {NUM_ITEMS}"):
        loss(hidden, item_emb, torch.full_like(targets, NUM_ITEMS))


# ---------------------------------------------------------------- working blocks sized by the device

STREAMING = ["ce_chunked", "ce_logq", "sce"]


@pytest.mark.parametrize("name", STREAMING)
def test_block_mib_none_is_the_devices_block_read_at_call_time(name, monkeypatch):
    asked = []

    def fake_block(device, budget_bytes=None):
        asked.append(torch.device(device))
        return 1 << 10

    hidden, item_emb, targets, batch = _problem()
    auto = _build(name, {"block_mib": None})
    assert auto.block_mib is None
    want = _build(name, {"block_mib": 1 / 1024})(hidden, item_emb, targets, batch)  # 1 KiB, given
    monkeypatch.setattr(loss_base, "working_block_bytes", fake_block)
    _build(name, {"block_mib": 1 / 1024})(hidden, item_emb, targets, batch)
    assert asked == []  # an explicit block_mib wins
    assert torch.equal(auto(hidden, item_emb, targets, batch), want)
    assert asked and set(asked) == {hidden.device}


@pytest.mark.parametrize("name", STREAMING)
def test_block_mib_none_on_cpu_is_the_32_mib_block_of_before(name):
    hidden, item_emb, targets, batch = _problem()
    auto, fixed = _build(name, {"block_mib": None}), _build(name, {"block_mib": 32.0})
    assert torch.equal(auto(hidden, item_emb, targets, batch), fixed(hidden, item_emb, targets, batch))
    assert auto.estimate_peak_bytes(4096, 64) == fixed.estimate_peak_bytes(4096, 64)
    (spec,) = [spec for spec in lookup(name).params if spec.name == "block_mib"]
    assert spec.default is None and spec.default_text == "auto (32 MiB on CPU, sized to free memory on a GPU)"


def test_reduced_precision_blocks_hold_the_same_bytes():
    """A bf16 block of ce_chunked holds a bf16 product and its float32 copy: 6 bytes a logit, so a 1 MiB block
    takes 2/3 of the items a float32 one takes, not twice as many."""
    from rece_bench.losses.precision import logit_bytes

    assert (logit_bytes(torch.float32), logit_bytes(torch.bfloat16), logit_bytes(torch.float64)) == (4, 6, 8)
    assert math.isclose(logit_bytes(torch.float16) / logit_bytes(torch.float32), 1.5)
