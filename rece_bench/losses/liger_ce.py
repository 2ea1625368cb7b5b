"""Liger Kernel's fused linear cross-entropy (PyPI ``liger-kernel``): exact full CE, the (N, C) logits made one
chunk of positions at a time, softmax and its gradient in a Triton kernel, the gradients computed in the forward
pass. Wraps the library's public ``liger_kernel.transformers.functional.liger_fused_linear_cross_entropy``.

Chunking: Liger sizes a chunk of positions so that its logits hold about ``chunk_mem_const`` x N x D elements:
``chunk = next_pow2(ceil(N / ceil(C / (chunk_mem_const D))))``. The library's default (1) suits an LLM's
vocabulary (C ~ 10 D), not a catalogue: at D 64, C 173,511, N 8,192 it makes 2,048 chunks of 4 positions, and
one H200 took 491 ms in fp32 where full CE took 27.6 ms (shared/reference/GPU.md): launch overhead. The functional
form takes ``chunk_mem_const`` (the module form does not); it is this loss's parameter, the library's default
first, e.g. 64 gives 256-position chunks at that shape.

Semantics: the mean over positions of ``lse_t - <h_t, e_{y_t}>``, as ``ce``: value and gradients exact. The
gradient of the item table is accumulated in float32 (``accum_dtype``) whatever the inputs' dtype, and comes back
in the inputs' dtype. Its kernels need a CUDA GPU, or Triton's interpreter on the CPU (``TRITON_INTERPRET=1`` set
before triton is imported): there it runs, and the tests check it against a float64 reference.
"""

from __future__ import annotations

import math

import torch

from rece_bench.errors import UserError
from rece_bench.losses.base import Loss, LossBatch, ParamSpec, check_int, register
from rece_bench.losses.cards import LossCard, register_card
from rece_bench.losses.ce import CE_CARD
from rece_bench.losses.triton_libs import kernel_unavailable_reason


@register
class LigerCrossEntropy(Loss):
    name = "liger_ce"
    description = (
        "Liger Kernel's fused linear cross-entropy (liger-kernel): exact full CE over chunks of positions, "
        "softmax in a Triton kernel; needs a CUDA GPU."
    )
    params = (
        ParamSpec(
            "chunk_mem_const", "int", 1,
            "Liger's chunk size knob: a chunk's logits hold ~chunk_mem_const x N x D elements (1 = library default).",
        ),
    )  # fmt: skip

    def __init__(self, num_items: int, chunk_mem_const: int = 1) -> None:
        super().__init__(num_items)
        self.chunk_mem_const = check_int("chunk_mem_const", chunk_mem_const, minimum=1)

    @classmethod
    def unavailable_reason(cls, device: str | torch.device, precision: str = "fp32") -> str | None:
        return kernel_unavailable_reason(device, "liger-kernel", "liger_kernel", interpreter_works=True)

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        reason = self.unavailable_reason(hidden.device)
        if reason is not None:
            raise UserError(f"loss 'liger_ce' cannot run on {hidden.device}: {reason}")
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        value = liger_fused_linear_cross_entropy(
            hidden, item_emb, targets, reduction="mean", accum_dtype=torch.float32,
            chunk_mem_const=self.chunk_mem_const,
        )  # (N, D), (C, D), (N,) -> scalar  # fmt: skip
        return value.float()

    def chunk_positions(self, n_positions: int, dim: int) -> int:
        """Positions per chunk as Liger 0.8.5 sizes them (its fused_linear_cross_entropy_forward)."""
        per_chunk = math.ceil(n_positions / math.ceil(self.num_items / (self.chunk_mem_const * dim)))
        return min(n_positions, 1 << max(0, per_chunk - 1).bit_length())

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        # one chunk's logits and their gradient, and the float32 gradients made in the forward pass and kept
        chunk = self.chunk_positions(n_positions, dim)
        return 2 * chunk * self.num_items * elem_bytes + 4 * (n_positions + self.num_items) * dim


register_card(
    LossCard(
        name="liger_ce",
        label="Liger CE",
        report_rank=54,  # beside the other exact CEs: ce (40), ce_chunked (50), cce (52)
        # The same loss as full CE, value and gradient: it trains and compares like CE (batch is its only knob).
        ladder=CE_CARD.ladder,
        paper_presets=CE_CARD.paper_presets,
        paper_results=CE_CARD.paper_results,
    )
)
