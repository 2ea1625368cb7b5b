"""Launch cost of a callable: the aten operations it dispatches (counted), and the profiler's table of them.

Every aten op that reaches the dispatcher below autograd is one kernel launch on a GPU (give or take a fused
or a no-op view), so a count taken on a CPU says what a GPU will have to launch. The count also singles out the
data-dependent ops: those whose output shape depends on the values (``nonzero``, ``masked_select``, ``unique``,
boolean-mask indexing, ``repeat_interleave`` without ``output_size``, ...) and those that read a value back to
the host (``.item()``, ``equal``): on a GPU each of them waits for the device (a host synchronisation).

The classification reads the tags aten gives its ops (``dynamic_output_shape``, ``data_dependent_output``), then
refines the two tagged ops that are data-dependent only for some arguments: ``index.Tensor`` (only with a
boolean index) and ``repeat_interleave.Tensor`` (only without ``output_size``); and it adds boolean-mask
assignment (``index_put`` with a boolean index), which aten does not tag but which runs ``nonzero`` inside.

``write_profile`` runs a callable once under ``torch.profiler`` (CPU activity, and CUDA's on a GPU) and writes the
key-averages table to a file: where the time goes, op by op.

Nothing here runs at import; torch is imported inside the functions that need it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rece_bench.errors import UserError

_DATA_TAGS = ("dynamic_output_shape", "data_dependent_output")
_INDEXING = ("index", "index_put", "index_put_", "_index_put_impl_")  # data-dependent with a boolean index


@dataclass(frozen=True)
class OpCount:
    """What a callable dispatched: ``total`` aten ops, ``data_dependent`` of them; both per op name
    (``aten.nonzero``, the overload packet's name)."""

    total: int
    data_dependent: int
    by_op: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    data_dependent_by_op: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.total != sum(self.by_op.values()) or self.data_dependent != sum(self.data_dependent_by_op.values()):
            raise ValueError("OpCount totals must equal the sums of their per-op counts")

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        """The ``n`` most dispatched ops, most first (ties by name)."""
        return sorted(self.by_op.items(), key=lambda item: (-item[1], item[0]))[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "data_dependent": self.data_dependent,
            "by_op": dict(self.by_op),
            "data_dependent_by_op": dict(self.data_dependent_by_op),
        }


def is_data_dependent(func: Any, args: tuple, kwargs: Mapping[str, Any]) -> bool:
    """Whether one dispatched aten op (an ``OpOverload`` with its arguments) has a value-dependent output shape or
    reads a value back to the host."""
    name = func.overloadpacket.__name__
    if name in _INDEXING:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return _any_bool_index(indices)
    if name == "repeat_interleave" and func._overloadname in ("Tensor", "Tensor_out"):
        return kwargs.get("output_size") is None
    return _tagged(func) or _tagged(_default_overload(func))


def count_ops(fn: Callable[[], Any]) -> tuple[Any, OpCount]:
    """Run ``fn()`` once under a dispatch mode; return its result and the ops it dispatched (backward included
    when ``fn`` calls it)."""
    mode = _counting_mode()
    with mode:
        result = fn()
    return result, mode.result()


def write_profile(fn: Callable[[], Any], path: Path, device_type: str, title: str, rows: int = 60) -> Path:
    """Run ``fn()`` once under the torch profiler and write its key-averages table (the ``rows`` ops with the most
    self time: on CUDA device time, else CPU time) under the line ``title`` to ``path``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device_type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=rows)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{title}\n\n{table}\n")
    except OSError as exc:
        raise UserError(f"cannot write the profile {path}: {exc.strerror}: pass a writable --profile folder") from None
    return path


def _counting_mode() -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountingMode(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: Counter[str] = Counter()
            self.data_ops: Counter[str] = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            name = f"aten.{func.overloadpacket.__name__}"
            self.ops[name] += 1
            if is_data_dependent(func, args, kwargs):
                self.data_ops[name] += 1
            return func(*args, **kwargs)

        def result(self) -> OpCount:
            return OpCount(
                total=sum(self.ops.values()),
                data_dependent=sum(self.data_ops.values()),
                by_op=MappingProxyType(dict(self.ops)),
                data_dependent_by_op=MappingProxyType(dict(self.data_ops)),
            )

    return CountingMode()


def _tagged(func: Any) -> bool:
    return func is not None and any(tag.name in _DATA_TAGS for tag in func.tags)


def _default_overload(func: Any) -> Any:
    """The ``default`` overload of ``func``'s packet (``out=`` variants carry no tags of their own)."""
    packet = func.overloadpacket
    return getattr(packet, "default", None) if "default" in packet.overloads() else None


def _any_bool_index(indices: Any) -> bool:
    import torch

    return any(isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8) for index in indices or ())
