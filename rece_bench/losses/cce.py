"""Apple's Cut Cross-Entropy (Wijmans et al., ICLR 2025; PyPI ``cut-cross-entropy``): exact full CE in Triton
kernels that never write the (N, C) logits to memory. Wraps the library's public ``linear_cross_entropy``.

What a user who cannot fit full CE's logits on a GPU reaches for first; here it is weighed against RECE and SCE.
Measured on one H200 (shared/reference/GPU.md, bf16 inputs, C 173,511, N 51,200, D 64): 139 ms at 178 MiB, where
full CE took 86 ms and 50,981 MiB.

Limits of the PyPI release 25.1.1, which the availability rules follow (``unavailable_reason``):
- its backward asserts "Backwards requires embeddings to be bf16 or fp16": fp32 training is refused here (use
  ``--precision bf16``); a later source release added fp32, not yet on PyPI.
- its kernels need a CUDA GPU. Under Triton's interpreter (``TRITON_INTERPRET=1``, triton 3.9) the forward kernel
  fails in its log-add-exp: ``InterpreterError: AttributeError("'NoneType' object has no attribute 'dtype'")``
  (``libdevice.log1p`` has no interpreter implementation), so it cannot be tested on a CPU.

Semantics: the mean over positions of ``lse_t - <h_t, e_{y_t}>``, as ``ce``. The library's gradient filter
(``filter_eps``: softmax entries below it are skipped in the backward pass, the library's default "high" being
eps(dtype) / 32, 2.4e-4 in bf16) makes the gradients approximate; here it defaults to None, the exact gradient.
``impl="torch_compile"`` is the library's fallback: ``torch.compile`` of the materialised logits (no memory saving;
it runs on a CPU in fp32, but ``rece-bench`` lists the loss by its kernels' needs).
"""

from __future__ import annotations

import torch

from rece_bench.errors import UserError
from rece_bench.losses.base import Loss, LossBatch, ParamSpec, check_choice, check_float, register
from rece_bench.losses.cards import LossCard, register_card
from rece_bench.losses.ce import CE_CARD
from rece_bench.losses.triton_libs import kernel_unavailable_reason, precision_of_dtype

IMPLS = ("cce", "torch_compile")
BACKWARD_PRECISIONS = ("bf16", "fp16")  # what 25.1.1's backward accepts for the embeddings


@register
class CutCrossEntropy(Loss):
    name = "cce"
    description = (
        "Apple's Cut Cross-Entropy (cut-cross-entropy): exact full CE in fused Triton kernels that never write "
        "the (N, C) logits; needs a CUDA GPU and bf16/fp16."
    )
    params = (
        ParamSpec(
            "filter_eps", "float | None", None,
            "Skip softmax entries below this in the backward (approximate gradients); None: exact gradients.",
        ),
        ParamSpec("impl", "str", "cce", "'cce' (the fused Triton kernels) or 'torch_compile' (library fallback)."),
    )  # fmt: skip

    def __init__(self, num_items: int, filter_eps: float | None = None, impl: str = "cce") -> None:
        super().__init__(num_items)
        self.filter_eps = None if filter_eps is None else check_float("filter_eps", filter_eps, 0.0, 1.0)
        self.impl = check_choice("impl", impl, IMPLS)

    @classmethod
    def unavailable_reason(cls, device: str | torch.device, precision: str = "fp32") -> str | None:
        reason = kernel_unavailable_reason(device, "cut-cross-entropy", "cut_cross_entropy", interpreter_works=False)
        if reason is None and precision not in BACKWARD_PRECISIONS:
            reason = f"cut-cross-entropy 25.1.1 has no {precision} backward (bf16 or fp16 only): pass --precision bf16"
        return reason

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        if self.impl == "cce":
            self._check_runnable(hidden, item_emb)
        from cut_cross_entropy import linear_cross_entropy

        value = linear_cross_entropy(
            hidden, item_emb, targets, reduction="mean", filter_eps=self.filter_eps, impl=self.impl
        )  # (N, D), (C, D), (N,) -> scalar
        return value.float()

    def _check_runnable(self, hidden: torch.Tensor, item_emb: torch.Tensor) -> None:
        """The library's own failures (no CUDA driver, an assertion in the backward) as one-line errors."""
        precision = precision_of_dtype(hidden.dtype)
        training = hidden.requires_grad or item_emb.requires_grad
        reason = self.unavailable_reason(hidden.device, precision if training else "bf16")
        if reason is not None:
            raise UserError(f"loss 'cce' cannot run on {hidden.device} with {hidden.dtype} inputs: {reason}")

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        # the float32 log-sum-exp per position and the float32 mean logit per item (the backward's item order)
        return 4 * n_positions + 4 * self.num_items


register_card(
    LossCard(
        name="cce",
        label="CCE",
        report_rank=52,  # beside the other exact CEs: ce (40), ce_chunked (50)
        # The same loss as full CE, value and gradient: it trains and compares like CE (batch is its only knob).
        ladder=CE_CARD.ladder,
        paper_presets=CE_CARD.paper_presets,
        paper_results=CE_CARD.paper_results,
    )
)
