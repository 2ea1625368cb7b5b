"""What every kernel module shares: tile sizes, the float32 product helper, small size helpers.

Triton decides at decoration time whether ``triton.jit`` gives a compiled or an interpreted kernel (it reads
``TRITON_INTERPRET`` then), and its own standard library (tl.max, tl.sum, ...) is decorated when triton is first
imported. So a process's interpreter mode is fixed when it first imports triton: the tests run the kernels in
subprocesses that set the variable first, and ``triton_available`` refuses a CPU run where it came too late.

This module imports triton: only the kernel modules import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import triton
import triton.language as tl

from rece_bench.kernels import interpreting


@triton.jit
def dot_f32(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):  # noqa: ANN001, ANN201
    """a @ b accumulated in float32; with UPCAST (the interpreter and bf16, see upcast_dots) the tiles are cast to
    float32 first."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def gather_rows(ptr, ids, ok, D, BLOCK_D: tl.constexpr):  # noqa: ANN001, ANN201
    """(len(ids), BLOCK_D) tile of rows ``ids`` of a (rows, D) row-major table; masked rows and columns read 0."""
    dims = tl.arange(0, BLOCK_D)
    return tl.load(
        ptr + ids.to(tl.int64)[:, None] * D + dims[None, :], mask=ok[:, None] & (dims[None, :] < D), other=0.0
    )


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
