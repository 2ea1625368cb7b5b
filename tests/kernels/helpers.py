"""Inputs and tolerances shared by the kernel tests."""

from __future__ import annotations

import torch

# bf16 keeps 8 significant bits: each input rounding is 2^-9 relative, the kernels round the probabilities
# to bf16 before the tensor-core products (another 2^-9 per term) and the gradients come back in bf16 (2^-9).
# Against a float64 reference on the same (bf16-rounded) inputs, 2^-6 of the largest entry bounds these with
# room for the accumulation of a few dozen terms; fp16 (11 bits) gets 2^-9.
GRAD_TOL = {torch.float32: 2e-5, torch.bfloat16: 2**-6, torch.float16: 2**-9}
# Compiled on a GPU, float32 tiles are multiplied in three-pass TF32 (kernels._runtime.FP32_DOT_PRECISION), which
# drops the tail x tail terms: about 2^-21 of each product, so 1e-4 absolute on logits of a few tens.
CUDA_FP32_TOL = 1e-4


def fp32_tol(device: str) -> float:
    return GRAD_TOL[torch.float32] if device == "cpu" else CUDA_FP32_TOL


def on_device(device: str, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Copies on ``device``; those that required grad become new leaves that do."""
    return [t.detach().to(device).requires_grad_(t.requires_grad) for t in tensors]


def make_inputs(n: int, c: int, d: int, dtype: torch.dtype, seed: int = 0, scale: float = 1.0):
    """hidden (N, D) and item_emb (C, D) in ``dtype`` requiring grad, targets (N,), a grad_output (N,) with
    negative, zero and varied entries."""
    gen = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, d, generator=gen) * scale).to(dtype).requires_grad_()
    item_emb = torch.randn(c, d, generator=gen).to(dtype).requires_grad_()
    targets = torch.randint(0, c, (n,), generator=gen)
    grad_out = torch.rand(n, generator=gen) * 2 - 0.5
    grad_out[0] = 0.0
    return hidden, item_emb, targets, grad_out


def grads_of(per_position: torch.Tensor, grad_out: torch.Tensor, *inputs: torch.Tensor):
    return torch.autograd.grad(per_position, inputs, grad_outputs=grad_out.to(per_position.dtype))


def assert_grad_close(
    got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, name: str, tol: float | None = None
) -> None:
    """Max abs error within ``tol`` (default GRAD_TOL[dtype]) times the reference's largest entry (at least 1e-3)."""
    assert got.dtype == dtype, f"{name}: gradient dtype {got.dtype}, want {dtype}"
    assert torch.isfinite(got).all(), name
    error = (got.double().cpu() - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-3)
    tol = GRAD_TOL[dtype] if tol is None else tol
    assert error <= tol * scale, f"{name}: max error {error:.3g} vs scale {scale:.3g} ({dtype})"
