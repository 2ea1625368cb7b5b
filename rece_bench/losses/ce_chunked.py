"""Exact full cross-entropy without the (N, C) logits: blocks of items, recomputed in the backward pass.

Why not torch's ``linear_cross_entropy(..., options=LinearCrossEntropyOptions())``: on a 2-core CPU (N 2,048,
C 100,000, D 64, forward+backward) it took 11.6 s where materialised CE took 3.4 s and this function 2.0 s.
At N 8,192, D 64 (bench-loss, one thread) this function peaks at 117 MiB / 16 s for C 100,000 and 557 MiB for
C 1,000,000, against REFERENCE's 79 MiB / 19.4 s and 738 MiB / 318 s for torch's. The positive's gradient goes
into the same (C, D) buffer as the rest, so the catalogue-sized gradient exists once.
"""

from __future__ import annotations

import torch

from rece_bench.kernels import KERNEL_CHOICES, KERNEL_HELP, use_triton
from rece_bench.losses.base import Loss, LossBatch, ParamSpec, check_choice, check_float, register
from rece_bench.losses.ce import CrossEntropy
from rece_bench.losses.sampling import add_positive_grad, positive_logits

_MIB = 1 << 20


class _FullCrossEntropy(torch.autograd.Function):
    """Per-position CE, lse_t - <h_t, e_{y_t}> with lse_t over every item, one block of items at a time.

    The positive's gradient is added into the same (C, D) buffer, so only one catalogue-sized gradient exists.
    """

    @staticmethod
    def forward(ctx, hidden, item_emb, targets, block_items: int):  # noqa: ANN001
        lse = torch.full(hidden.shape[:1], -torch.inf, dtype=hidden.dtype, device=hidden.device)  # (N,)
        for start in range(0, item_emb.shape[0], block_items):
            logits = hidden @ item_emb[start : start + block_items].T  # (N, D) x (D, Cb) -> (N, Cb)
            torch.logaddexp(lse, torch.logsumexp(logits, dim=1), out=lse)
        ctx.save_for_backward(hidden, item_emb, targets, lse)
        ctx.block_items = block_items
        return lse - positive_logits(hidden, item_emb, targets)

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: ANN001
        hidden, item_emb, targets, lse = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden)
        grad_items = torch.empty_like(item_emb)
        for start in range(0, item_emb.shape[0], ctx.block_items):
            block = item_emb[start : start + ctx.block_items]  # (Cb, D)
            probs = hidden @ block.T  # (N, D) x (D, Cb) -> (N, Cb)
            probs.sub_(lse[:, None]).exp_().mul_(grad_loss[:, None])  # softmax, scaled by the incoming grad
            grad_hidden.addmm_(probs, block)  # (N, Cb) x (Cb, D) -> (N, D)
            torch.mm(probs.T, hidden, out=grad_items[start : start + ctx.block_items])  # (Cb, N) x (N, D)
        add_positive_grad(grad_hidden, grad_items, hidden, item_emb, targets, -grad_loss)
        return grad_hidden, grad_items, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, block_bytes: int
) -> torch.Tensor:
    """(N,) exact full CE of every position without holding the (N, C) logits."""
    block_items = max(1, block_bytes // (hidden.element_size() * hidden.shape[0]))
    return _FullCrossEntropy.apply(hidden, item_emb, targets, block_items)


@register
class ChunkedCrossEntropy(Loss):
    name = "ce_chunked"
    description = "Exact full cross-entropy computed over blocks of items; never holds the (N, C) logits."
    params = (
        ParamSpec("block_mib", "float", 32.0, "Working memory of one block of logits, in MiB."),
        ParamSpec("kernel", "str", "auto", KERNEL_HELP),
    )
    label = "CE (chunked)"
    report_rank = 50
    # The same loss as full CE, value and gradient: it trains and compares like CE.
    ladder = CrossEntropy.ladder
    paper_presets = CrossEntropy.paper_presets
    paper_results = CrossEntropy.paper_results

    def __init__(self, num_items: int, block_mib: float = 32.0, kernel: str = "auto") -> None:
        super().__init__(num_items)
        self.block_mib = check_float("block_mib", block_mib, 0.0, 1e6, low_open=True)
        self.kernel = check_choice("kernel", kernel, KERNEL_CHOICES)

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        if use_triton(self.name, self.kernel, hidden.device):
            from rece_bench.kernels.linear_ce import linear_cross_entropy

            return linear_cross_entropy(hidden, item_emb, targets).mean()
        return chunked_cross_entropy(hidden, item_emb, targets, int(self.block_mib * _MIB)).mean()

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        return 3 * int(self.block_mib * _MIB) + 4 * n_positions * dim * elem_bytes
