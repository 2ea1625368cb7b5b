"""Fused Triton kernels (optional): the exact linear cross-entropy and RECE's window, no logits in memory.

This package owns the Triton implementations behind the ``kernel`` parameter of ``ce_chunked`` and ``rece``:
``linear_ce`` (exact full CE: online log-sum-exp over tiles of items, gradients recomputed per tile) and
``rece_window`` (RECE's chunk-against-window logits with the earlier-round rule computed in the kernel).
They are an implementation choice of those losses, not losses of their own; the torch paths stay the
reference and the CPU path.

Nothing heavy is imported here: ``triton`` is imported only when a kernel runs. On CPU the kernels run under
Triton's interpreter when ``TRITON_INTERPRET=1`` is set (slow: for tests at tiny shapes).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

log = logging.getLogger(__name__)
KERNEL_CHOICES = ("auto", "torch", "triton")
KERNEL_HELP = "'torch', 'triton' (fused Triton kernels) or 'auto' (Triton where measured faster on the device)."
_SAID: set[str] = set()  # reasons already logged, so each is said once per process

INSTALL_HINT = "pip install 'rece-bench[kernels]'"

# Where a Triton kernel has been measured faster than the torch path, per loss and device type; ``kernel="auto"``
# takes Triton only there. Empty until benchmarks/gpu_check.sh (python -m rece_bench.kernels.bench) has measured
# it on a GPU: flip an entry to e.g. {("ce_chunked", "cuda"), ("rece", "cuda")} once measured.
MEASURED_FASTER: frozenset[tuple[str, str]] = frozenset()


def interpreting() -> bool:
    """True when Triton's interpreter is requested (``TRITON_INTERPRET`` set to a true value)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_available(device: object = None) -> str | None:
    """None when the Triton kernels can run (on ``device``'s type, when given), else the reason and the fix."""
    if importlib.util.find_spec("triton") is None:
        return f"triton is not installed: {INSTALL_HINT}"
    device_type = getattr(device, "type", None if device is None else str(device).split(":")[0])
    if device_type in (None, "cuda"):
        return None
    if interpreting():
        return (
            None if _interpreter_loaded() else "TRITON_INTERPRET=1 was set after triton had been imported: set it first"
        )
    return (
        f"Triton kernels need a CUDA device (--device cuda), or TRITON_INTERPRET=1 to interpret them on {device_type}"
    )


def _interpreter_loaded() -> bool:
    """Whether triton was (or will be) imported in interpreter mode: its standard library is decorated at import."""
    if "triton" not in sys.modules:
        return True
    import triton.language.standard as standard

    return type(standard.max).__name__ == "InterpretedFunction"


def use_triton(loss: str, kernel: str, device: object) -> bool:
    """Whether a loss with ``kernel`` ('torch', 'triton' or 'auto') runs its Triton path on ``device``.

    'triton' where the kernels cannot run raises a one-line UserError naming the fix; 'auto' takes Triton only
    where MEASURED_FASTER says it has been measured faster on that device type.
    """
    from rece_bench.errors import UserError

    if kernel == "torch":
        return False
    reason = triton_available(device)
    if kernel == "triton":
        if reason is not None:
            raise UserError(f"kernel='triton' for {loss}: {reason}")
        return True
    if reason is not None and "not installed" in reason and reason not in _SAID:
        _SAID.add(reason)
        log.info("the losses run their torch paths (%s)", reason)
    device_type = getattr(device, "type", str(device))
    return reason is None and (loss, device_type) in MEASURED_FASTER
