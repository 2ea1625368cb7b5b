"""Dtypes inside the losses: one compute dtype per call, float32 accumulators, and autocast kept out of the way.

``Loss.forward`` casts ``hidden`` and ``item_emb`` to one compute dtype (``compute_dtype``) and runs ``compute``
with autocast off, so every loss and every custom autograd Function sees same-dtype inputs, whatever the caller's
context. Inside, the rule is Apple Cut Cross-Entropy's: matrix products take compute-dtype operands (bf16 or fp16
runs at tensor-core rates), and whatever sums over many terms (log-sum-exp, running sums, gradient buffers fed
block by block) lives in the accumulate dtype, float32 at least (``accumulate_dtype``), cast to the input's dtype
once at the end. No in-place op, ``out=`` or index op mixes dtypes: CUDA kernels refuse that where CPU ones
promote, so each cast is written out (``tests/losses/test_precision.py`` refuses mixed dtypes on CPU as CUDA does).

For float32 and float64 inputs every helper here is the identity or the plain op: the full-precision arithmetic is
unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch

# Reduced precisions that autocast casts to; torch's autocast leaves float64 alone, and so do the losses.
AUTOCAST_ELIGIBLE = (torch.float32, torch.bfloat16, torch.float16)


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for bf16, fp16 and fp32; float64 stays float64. (Not ``torch.promote_types``: that is a dispatched
    op, and the losses count their dispatched ops as their launch cost.)"""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_accumulate(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in its accumulate dtype (itself when already there: no copy)."""
    return tensor.to(accumulate_dtype(tensor.dtype))


def logit_bytes(dtype: torch.dtype) -> int:
    """Bytes one logit of a streamed block costs: made in ``dtype`` by a matrix product and worked on in the
    accumulate dtype (bf16: 2 + 4, the product and its float32 copy; fp32: 4; fp64: 8)."""
    size, acc_size = dtype.itemsize, accumulate_dtype(dtype).itemsize
    return acc_size + (size if size < acc_size else 0)


def accumulate_size(dtype: torch.dtype) -> int:
    """Bytes of one element of ``dtype``'s accumulate dtype."""
    return accumulate_dtype(dtype).itemsize


def matmul_acc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in the accumulate dtype: the product runs in the dtype of ``b`` (the compute dtype; ``a`` is cast to
    it, as autocast casts a product's operands), its result is cast up once."""
    product = torch.mm if a.dim() == 2 else torch.bmm  # not matmul: it dispatches reshapes around the bmm
    return product(a.to(b.dtype), b).to(accumulate_dtype(b.dtype))


def add_matmul_(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out += a @ b in place, ``out`` an accumulator: one fused ``addmm_`` when all three share a dtype (full
    precision), else the product in ``b``'s dtype and its result cast to ``out``'s before the add."""
    if a.dtype == b.dtype == out.dtype:
        return out.addmm_(a, b)
    return out.add_(torch.mm(a.to(b.dtype), b).to(out.dtype))


def compute_dtype(hidden: torch.Tensor, item_emb: torch.Tensor) -> torch.dtype:
    """The one dtype a loss computes in.

    Under autocast for the inputs' device type: the autocast dtype (torch's own autocast leaves float64 alone, and
    so does this: a float64 input keeps the call in float64). Without autocast: the wider of the two dtypes
    (torch's type promotion), so a bf16 ``hidden`` beside a float32 item table computes in float32.
    """
    device_type = hidden.device.type
    dtypes = (hidden.dtype, item_emb.dtype)
    if autocast_enabled(device_type) and all(dtype in AUTOCAST_ELIGIBLE for dtype in dtypes):
        return torch.get_autocast_dtype(device_type)
    return hidden.dtype if hidden.dtype == item_emb.dtype else torch.promote_types(*dtypes)


def autocast_enabled(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager[Any]:
    """A context with autocast disabled for ``device_type`` (nothing to do for a device type without autocast)."""
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def amp_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.amp.custom_fwd`` for the device type of the call's tensors, chosen per call, autocast off inside.

    ``custom_fwd`` binds one device type when applied, and our Functions serve CPU and CUDA alike: so the device
    type is read from the first tensor argument on each call. The forward runs with autocast off (its inputs are
    already in one compute dtype, and each cast inside is written out); ``amp_backward`` then runs the backward
    with autocast off too, whatever context ``backward()`` is called from (on CPU the backward runs in the
    caller's thread, under the caller's autocast).
    """

    @functools.wraps(forward)
    def wrapped(ctx: Any, *args: Any) -> Any:
        device_type = next(arg.device.type for arg in args if isinstance(arg, torch.Tensor))
        ctx.amp_device_type = device_type
        if not torch.amp.is_autocast_available(device_type):
            return forward(ctx, *args)
        with autocast_off(device_type):
            return torch.amp.custom_fwd(forward, device_type=device_type)(ctx, *args)

    return wrapped


def amp_backward(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.amp.custom_bwd`` for the device type ``amp_forward`` recorded: the forward's autocast state (off)."""

    @functools.wraps(backward)
    def wrapped(ctx: Any, *grads: Any) -> Any:
        device_type = ctx.amp_device_type
        if not torch.amp.is_autocast_available(device_type):
            return backward(ctx, *grads)
        return torch.amp.custom_bwd(backward, device_type=device_type)(ctx, *grads)

    return wrapped
