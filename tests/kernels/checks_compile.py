"""Compile every kernel for Hopper (sm_90) without a GPU: catches what the interpreter lets through (globals
that are not constexpr, loop-carried type changes, unsupported ops) before a GPU run.

Run by test_compile.py in a subprocess without TRITON_INTERPRET; small tiles keep it quick.
"""

from __future__ import annotations


def _compile(fn, signature: dict, constants: dict) -> None:  # noqa: ANN001
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {**signature, **{name: "constexpr" for name in constants}}
    source = ASTSource(fn, signature, constants)
    kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 2})
    assert "ptx" in kernel.asm, f"{fn.__name__}: no PTX"


def all_kernels() -> None:
    from rece_bench.kernels import linear_ce, rece_window
    from rece_bench.kernels._runtime import FP32_DOT_PRECISION

    for dtype, precision in (("fp32", FP32_DOT_PRECISION), ("bf16", "tf32")):
        inputs = {"h_ptr": f"*{dtype}", "e_ptr": f"*{dtype}", "y_ptr": "*i64"}
        sizes = {"N": "i32", "C": "i32", "D": "i32"}
        const = {"BLOCK_N": 16, "BLOCK_C": 16, "BLOCK_D": 16, "PRECISION": precision, "UPCAST": False}
        stats = {"lse_ptr": "*fp32", "g_ptr": "*fp32"}
        _compile(
            linear_ce._forward_kernel,
            {**inputs, "lse_ptr": "*fp32", "pos_ptr": "*fp32", **sizes, "cols_per_split": "i32"},
            const,
        )
        _compile(
            linear_ce._grad_hidden_kernel,
            {**inputs, **stats, "dh_ptr": "*fp32", **sizes, "cols_per_split": "i32"},
            const,
        )
        _compile(linear_ce._grad_items_kernel, {**inputs, **stats, "de_ptr": f"*{dtype}", **sizes}, const)
        tables = {**inputs, "pos_order_ptr": "*i64", "item_order_ptr": "*i64"}
        tables |= {"pos_chunk_ptr": "*i16", "item_chunk_ptr": "*i32"}
        ints = {name: "i32" for name in ("q", "N", "C", "D", "P", "I", "n_ec")}
        window = {"BLOCK_P": 16, "BLOCK_W": 16, "BLOCK_D": 16, "PRECISION": precision, "UPCAST": False}
        grads = {"lz_ptr": "*fp32", "g_ptr": "*fp32"}
        _compile(rece_window._forward_kernel, {**tables, "lse_ptr": "*fp32", **ints}, window)
        _compile(rece_window._grad_hidden_kernel, {**tables, **grads, "dh_ptr": "*fp32", **ints}, window)
        window = {"BLOCK_I" if k == "BLOCK_W" else k: v for k, v in window.items()}
        _compile(rece_window._grad_items_kernel, {**tables, **grads, "de_ptr": "*fp32", **ints, "n_c": "i32"}, window)
