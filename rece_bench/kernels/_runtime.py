"""What every kernel module shares: jit-compiling the kernels on first use, tile sizes, small helpers.

Triton decides at decoration time whether ``triton.jit`` gives a compiled or an interpreted kernel (it reads
``TRITON_INTERPRET`` then), and its own standard library (tl.max, tl.sum, ...) is decorated when triton is
imported. So the interpreter mode of a process is fixed by the variable's value when triton is first
imported: the tests run the kernels in subprocesses that set it first. The kernels are written as plain
functions and decorated here on first use (keyed by the mode too, so a mismatch is never silently cached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rece_bench.kernels import interpreting

_JITTED: dict[tuple[bool, Callable[..., Any]], Any] = {}


def jitted(fn: Callable[..., Any]) -> Any:
    """``triton.jit(fn)`` for the current interpreter mode, made once per (mode, function)."""
    key = (interpreting(), fn)
    if key not in _JITTED:
        import triton

        _JITTED[key] = triton.jit(fn)
    return _JITTED[key]


@dataclass(frozen=True)
class Tiles:
    """Tile sizes and launch shape of one kernel call; powers of two, at least 16 (tl.dot's minimum)."""

    rows: int  # positions per program tile
    cols: int  # items per tile of the inner loop
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"Tiles.{name} must be a power of two >= 16, got {value}")


def block_dim(dim: int) -> int:
    """The embedding width padded to a power of two, at least 16."""
    return max(16, 1 << (dim - 1).bit_length())


# How the kernels multiply float32 tiles. 'tf32x3' splits each float32 into a TF32 head and a TF32 tail and sums
# three tensor-core products (dropping tail x tail, about 2^-21 relative): float32-level accuracy at tensor-core
# speed. 'ieee' (what torch's matmul does by default) runs on the FMA units: at D 64 it needs about 4.5e11 FMAs for
# one CE forward+backward at C 173,511, N 8,192, about 14 ms at an H200's peak, against ~1 ms of tensor-core work.
# Not yet measured on a GPU: `python -m rece_bench.kernels.bench` reports the time and the difference from torch.
FP32_DOT_PRECISION = "tf32x3"


def dot_precision(dtype: Any) -> str:
    """FP32_DOT_PRECISION for float32 inputs; bf16/fp16 run on tensor cores whatever this says ('tf32')."""
    import torch

    return FP32_DOT_PRECISION if dtype == torch.float32 else "tf32"


def upcast_dots(dtype: Any) -> bool:
    """Whether the kernels cast bf16 tiles to float32 right before tl.dot: only under the interpreter, whose dot
    multiplies bf16 tiles as their raw 16-bit patterns (triton 3.9). The products of two bf16 numbers are exact
    in float32, so this changes only the accumulation order, not what is computed."""
    import torch

    return interpreting() and dtype == torch.bfloat16


def multiprocessors(device: Any) -> int:
    """Streaming multiprocessors of a CUDA device; 1 elsewhere (the interpreter)."""
    import torch

    if getattr(device, "type", "") != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def cdiv(a: int, b: int) -> int:
    return -(-a // b)
