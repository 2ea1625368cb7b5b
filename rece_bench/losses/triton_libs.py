"""When a loss that wraps another library's Triton kernels can run here: the library, the device, the interpreter.

Shared by ``cce`` (Apple's Cut Cross-Entropy) and ``liger_ce`` (Liger Kernel's fused linear cross-entropy). The
libraries come with the optional extra ``[kernels]``; their kernels are Triton, which compiles for a CUDA GPU, or
runs on CPU tensors under Triton's interpreter when ``TRITON_INTERPRET=1`` is set before triton is imported
(slowly: a test path, not a benchmark one). Nothing here imports the libraries: ``importlib.util.find_spec`` says
whether they are installed without the seconds an import of triton costs, so ``rece-bench losses`` stays quick.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

INSTALL_HINT = "pip install 'rece-bench[kernels]'"


def installed(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (found on the path; not imported here)."""
    return importlib.util.find_spec(module) is not None


def interpreted() -> bool:
    """Whether Triton's interpreter is asked for (it must be set before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def kernel_unavailable_reason(device: Any, package: str, module: str, interpreter_works: bool) -> str | None:
    """Why a loss running ``package``'s Triton kernels cannot run on ``device`` here, with the fix; None if it can.

    ``interpreter_works``: the library's kernels run under Triton's interpreter on the CPU (measured per library).
    """
    import torch

    missing = [name for name, mod in ((package, module), ("triton", "triton")) if not installed(mod)]
    if missing:
        return f"needs {' and '.join(missing)}, not installed: {INSTALL_HINT}"
    kind = torch.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            return "its Triton kernels need a CUDA GPU and this machine has none: run it on a GPU with --device cuda"
        return None
    if interpreter_works and interpreted():
        return None  # Triton's interpreter runs the kernels on CPU tensors
    how = " (or set TRITON_INTERPRET=1 to interpret them on the CPU, slowly)" if interpreter_works else ""
    return f"its Triton kernels run on a CUDA GPU, not on {kind}: pass --device cuda{how}"


def precision_of_dtype(dtype: Any) -> str:
    """The precision name (``device.PRECISIONS``) of a compute dtype: fp32, bf16, fp16 (others by their name)."""
    import torch

    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(dtype, str(dtype).removeprefix("torch."))
