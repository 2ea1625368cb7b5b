"""Tiny float64 problems shared by the loss tests."""

from __future__ import annotations

import torch


def make_problem(n_positions: int, num_items: int, dim: int = 6, scale: float = 1.0, seed: int = 0):
    """hidden (N, D), item_emb (C, D) requiring grad, targets (N,); logits of about +-scale*dim."""
    gen = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n_positions, dim, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    item_emb = torch.randn(num_items, dim, generator=gen, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, num_items, (n_positions,), generator=gen)
    return hidden, item_emb, targets


def value_and_grads(loss_fn, hidden, item_emb):
    """The loss value and its gradients with respect to hidden and item_emb."""
    value = loss_fn()
    grad_hidden, grad_items = torch.autograd.grad(value, (hidden, item_emb))
    return value.detach(), grad_hidden, grad_items


def assert_same(got, want, tol: float = 1e-6) -> None:
    for name, a, b in zip(("value", "grad hidden", "grad item_emb"), got, want, strict=True):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, n=name: f"{n}: {m}")
