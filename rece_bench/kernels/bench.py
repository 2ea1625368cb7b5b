"""Torch against Triton for ce_chunked and rece, forward+backward, for the GPU check.

``python -m rece_bench.kernels.bench [--items 173511,1000000] [--positions 8192] [--dim 64]
[--precisions fp32,bf16] [--repeats 5] [--json PATH]``: per (C, precision, loss, kernel) the median of
CUDA-event timings of one forward+backward, the allocator's peak above the inputs, and, for the Triton rows,
the largest difference from the torch path's loss and gradients (same inputs, same RECE rounds; in bf16 this
includes the torch path's own bf16 error, often the larger part). RECE runs at
(n_ec 3, r 8), the paper's Gowalla configuration; ``cce`` (Apple's Cut Cross-Entropy) is timed beside them in
bf16/fp16 where it is registered. On a machine without CUDA it says so and exits with status 2; ``--smoke``
with TRITON_INTERPRET=1 runs the script on the CPU at tiny sizes (wall times, no memory figures) to check it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

_MIB = 1 << 20
CASES = (("ce_chunked", {}), ("rece", {"n_extra_chunks": 3, "rounds": 8}))
KERNELS = ("torch", "triton")


@dataclass(frozen=True)
class Row:
    items: int
    precision: str
    loss: str
    kernel: str
    median_ms: float
    peak_mib: float  # allocator peak during the pass, the inputs included (as shared/reference/GPU.md counts)
    beyond_inputs_mib: float  # the same, less what was allocated before the pass (the inputs)
    max_diff: float | None  # vs the torch path: loss value and both gradients, relative to their largest entry


def _inputs(n: int, c: int, d: int, dtype: Any, device: str, seed: int = 0) -> tuple[Any, Any, Any]:
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(n, d, device=device, generator=gen).to(dtype)
    item_emb = (torch.randn(c, d, device=device, generator=gen) * 0.5).to(dtype)
    targets = torch.randint(0, c, (n,), device=device, generator=gen)
    return hidden, item_emb, targets


def _step(loss: Any, hidden: Any, item_emb: Any, targets: Any) -> tuple[Any, ...]:
    """One forward+backward on fresh leaves; returns the value and both gradients."""
    import torch

    h = hidden.detach().requires_grad_()
    e = item_emb.detach().requires_grad_()
    if getattr(loss, "generator", None) is not None:
        loss.generator.manual_seed(0)  # the same RECE rounds for every kernel
    value = loss(h, e, targets)
    value.backward()
    if h.is_cuda:
        torch.cuda.synchronize()
    return value.detach(), h.grad, e.grad


def measure(loss: Any, inputs: tuple[Any, Any, Any], repeats: int) -> tuple[float, float, float]:
    """(median ms, peak MiB, peak MiB above what was allocated before) of ``repeats`` forward+backward passes."""
    import torch

    _step(loss, *inputs)  # warm-up: compilation, autotuning, allocator
    if not inputs[0].is_cuda:  # the smoke run: wall time, no allocator statistics
        start = time.perf_counter()
        _step(loss, *inputs)
        return (time.perf_counter() - start) * 1000, 0.0, 0.0
    times, peaks, beyond = [], [], []
    for _ in range(repeats):
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        _step(loss, *inputs)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        peaks.append(torch.cuda.max_memory_allocated() / _MIB)
        beyond.append((torch.cuda.max_memory_allocated() - base) / _MIB)
    return statistics.median(times), max(peaks), max(beyond)


def max_difference(got: tuple[Any, ...], want: tuple[Any, ...]) -> float:
    """Largest |got - want| over the value and gradients, each relative to the largest |want| entry."""
    return max(
        ((g.double() - w.double()).abs().max() / w.double().abs().max().clamp(min=1e-30)).item()
        for g, w in zip(got, want, strict=True)
    )


def _build(name: str, num_items: int, params: dict, kernel: str | None, device: str) -> Any:
    import torch

    from rece_bench.losses.base import build_loss

    extra = dict(params)
    if kernel is not None:
        extra["kernel"] = kernel
    if name == "rece":
        extra["generator"] = torch.Generator(device=device)
    return build_loss(name, num_items, **extra)


def bench_case(args: argparse.Namespace, items: int, precision: str) -> list[Row]:
    from rece_bench.device import precision_of

    dtype = precision_of(precision).autocast_dtype or __import__("torch").float32
    inputs = _inputs(args.positions, items, args.dim, dtype, args.device)
    rows = []
    for name, params in CASES:
        reference = None  # the torch path's value and gradients, kept on the host so they weigh on no peak
        for kernel in KERNELS:
            loss = _build(name, items, params, kernel, args.device)
            timing = measure(loss, inputs, args.repeats)
            result = tuple(t.cpu() for t in _step(loss, *inputs))
            diff = None if reference is None else max_difference(result, reference)
            if reference is None:
                reference = result
            rows.append(Row(items, precision, name, kernel, *timing, diff))
            del loss, result
    if precision != "fp32" and "cce" in _registered():
        timing = measure(_build("cce", items, {}, None, args.device), inputs, args.repeats)
        rows.append(Row(items, precision, "cce", "cce", *timing, None))
    return rows


def _registered() -> set[str]:
    from rece_bench.losses import base

    return set(base.LOSSES)


def table(rows: list[Row]) -> str:
    head = f"{'C':>9} {'prec':>5} {'loss':>10} {'kernel':>7} {'ms':>9} {'peak MiB':>9} {'beyond in':>9} {'max diff':>9}"
    lines = [head]
    for r in rows:
        diff = "" if r.max_diff is None else f"{r.max_diff:.2e}"
        lines.append(
            f"{r.items:>9} {r.precision:>5} {r.loss:>10} {r.kernel:>7} {r.median_ms:>9.2f} {r.peak_mib:>9.1f} "
            f"{r.beyond_inputs_mib:>9.1f} {diff:>9}"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rece_bench.kernels.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--items", default="173511,1000000", help="catalogue sizes C, comma-separated")
    parser.add_argument("--positions", type=int, default=8192, help="positions N")
    parser.add_argument("--dim", type=int, default=64, help="embedding width D")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 and/or fp16, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per row (after one warm-up)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--smoke", action="store_true", help="run on the CPU under TRITON_INTERPRET=1 (tiny sizes: checks the script)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    import rece_bench.losses  # noqa: F401  (registers the losses)
    from rece_bench.kernels import triton_available

    args.device = "cpu" if args.smoke else "cuda"
    if not args.smoke and not torch.cuda.is_available():
        print("rece_bench.kernels.bench times CUDA kernels and needs a CUDA GPU; none is available here.")
        print("(--smoke with TRITON_INTERPRET=1 runs the script on the CPU at tiny sizes, to check it.)")
        return 2
    reason = triton_available(torch.device(args.device))
    if reason is not None:
        print(f"rece_bench.kernels.bench: {reason}")
        return 2
    rows: list[Row] = []
    for items in (int(text) for text in args.items.split(",")):
        for precision in args.precisions.split(","):
            case_rows = bench_case(args, items, precision)
            print(table(case_rows), flush=True)  # as it goes: a run cut short still shows its rows
            rows += case_rows
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"torch": torch.__version__, "rows": [asdict(r) for r in rows]}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
