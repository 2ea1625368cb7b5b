"""Peak-memory measurement, the paper's way on CUDA and by live tensor bytes on CPU.

CUDA: synchronise, reset the allocator's peak statistics once the model and optimiser exist, record the allocated
bytes, run, then read ``torch.cuda.max_memory_allocated`` (REFERENCE section 5).
CPU: there is no allocator peak, so PyTorch's ``MemTracker`` counts the bytes of every live tensor storage (a
private API: it is imported here only). Objects made before the window (model, optimiser, inputs) must be handed
to ``track`` or their bytes are not counted.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from dataclasses import dataclass
from typing import Any

CUDA_METHOD = "cuda_allocator"
CPU_METHOD = "cpu_live_tensors"
RSS_METHOD = "cpu_process_peak_rss"  # the fallback where torch has no MemTracker: the process's high-water mark
log = logging.getLogger(__name__)


def cpu_tensor_tracker(track: tuple = ()):
    """torch's ``MemTracker`` (a private API, ``torch.distributed._tools.mem_tracker``: the one place it is named),
    tracking ``track`` too; None where this torch has none, and then ``PeakMemory`` falls back to the process's
    peak resident size (``RSS_METHOD``: it covers the whole process, torch's own libraries included, and never
    goes down, so it overstates a window's peak; the result records which method measured it)."""
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as exc:
        log.warning("torch has no MemTracker (%s): CPU memory is the process's peak resident size", exc)
        return None
    tracker = MemTracker()
    if track:
        tracker.track_external(*track)
    return tracker


def peak_rss_bytes() -> int:
    """The process's peak resident size so far (Linux reports KiB, macOS bytes); 0 where it cannot be read."""
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass(frozen=True)
class MemoryStats:
    """One peak-memory measurement over a window of work (what crosses from the meter to the result row)."""

    peak_bytes: int  # the highest total over the window, what was live at its start included
    start_bytes: int | None = None  # what was live when the window opened (None: not measured, e.g. a probe's peak)
    method: str | None = None  # CUDA_METHOD, CPU_METHOD or RSS_METHOD (None: not measured by a window)
    device: str | None = None
    device_peak_bytes: int | None = None  # NVML's used device memory at the end, CUDA only

    @property
    def peak_delta_bytes(self) -> int | None:
        """The peak beyond what was live at the start (the authors log this one too)."""
        return None if self.start_bytes is None else self.peak_bytes - self.start_bytes


class PeakMemory(contextlib.AbstractContextManager):
    """Context manager measuring the peak of memory in use inside its window.

    ``track`` lists modules, optimisers and tensors created before the window (CPU only: on CUDA the allocator
    already sees them). Call ``step_done()`` after every training or evaluation step: MemTracker refuses a
    module's second forward otherwise. ``current_peak_bytes()`` reads the peak so far, for progress displays.
    """

    def __init__(self, device: Any, track: tuple = ()) -> None:
        """``device``: a ``device.Compute``, or a device for ``device.compute_for``."""
        from rece_bench.device import compute_for

        self.compute = compute_for(device)
        self.device = self.compute.device
        self._track = track
        self._tracker = None
        self._rss = False  # measuring by peak resident size (no MemTracker in this torch)
        self._start_bytes = 0
        self.stats: MemoryStats | None = None

    @property
    def start_bytes(self) -> int:
        return self._start_bytes

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def __enter__(self) -> PeakMemory:
        if self.is_cuda:
            self._start_bytes = self.compute.reset_peak()
            return self
        self._tracker = cpu_tensor_tracker(self._track)
        if self._tracker is None:
            self._rss, self._start_bytes = True, peak_rss_bytes()
            return self
        self._tracker.__enter__()
        self._start_bytes = self._total(self._tracker.get_tracker_snapshot("current"))
        return self

    def step_done(self) -> None:
        if self._tracker is not None:
            self._tracker.reset_mod_stats()

    def current_peak_bytes(self) -> int:
        if self.is_cuda:
            return int(self.compute.allocator_peak_bytes())
        if self._tracker is None:
            return peak_rss_bytes() if self._rss else 0
        return self._total(self._tracker.get_tracker_snapshot("peak"))

    def __exit__(self, *exc: object) -> None:
        if self.is_cuda:
            self.compute.synchronize()
            peak = int(self.compute.allocator_peak_bytes())
            nvml = self.compute.nvml_used_bytes()
            self.stats = MemoryStats(peak, self._start_bytes, CUDA_METHOD, str(self.device), nvml)
            return None
        if self._rss:
            self._rss = False
            self.stats = MemoryStats(max(peak_rss_bytes(), self._start_bytes), self._start_bytes, RSS_METHOD, "cpu")
            return None
        self._tracker.__exit__(*exc)
        peak = self._total(self._tracker.get_tracker_snapshot("peak"))
        self.stats = MemoryStats(max(peak, self._start_bytes), self._start_bytes, CPU_METHOD, "cpu")
        self._tracker = None
        return None

    @staticmethod
    def _total(snapshot: dict) -> int:
        return int(sum(dev_snap.get("Total", 0) for dev_snap in snapshot.values()))


def format_bytes(n_bytes: float | None) -> str:
    """Human-readable binary size: 1536 -> '1.5 KiB'."""
    if n_bytes is None:
        return "-"
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse, as CUDA's caching allocator does; True if it took.

    By default glibc maps every block above 32 MiB fresh from the OS and unmaps it when freed, so a CPU step
    that builds a (positions x items) logits tensor pays a page fault per 4 KiB of it, every step (the README's
    bench-step section measures what that costs full CE). With mmap off and trimming off, large blocks come
    from the heap and stay there. The price is resident memory: freed blocks fragment the heap, and a full-CE
    bench-loss whose live tensors peak at 9.4 GB grew to 23 GB resident and was killed on a 24 GB machine. So
    it is opt-in (``RECE_BENCH_KEEP_FREED_MEMORY=1``), process-wide, and leaves tensor accounting (MemTracker)
    unchanged.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1


class Meter:
    """The memory window of a run: open once the model and optimiser exist, closed at the end of training.

    On CPU, live-tensor tracking slows a step about twofold, so by default it covers the first epoch only
    (``track_epochs``): every epoch runs the same batch shapes and a full validation, so the first epoch already
    holds the steady-state peak. On CUDA the allocator's peak is free and covers the whole run.
    """

    def __init__(self, device: Any, track: tuple, track_epochs: int) -> None:
        self._memory = PeakMemory(device, track=track)
        self._track_epochs = track_epochs if not self._memory.is_cuda else 0
        self._open = False
        self.stats = None

    def __enter__(self) -> Meter:
        self._memory.__enter__()
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def step_done(self) -> None:
        if self._open:
            self._memory.step_done()

    def current_peak_bytes(self) -> int:
        return self._memory.current_peak_bytes() if self._open else (self.stats.peak_bytes if self.stats else 0)

    @property
    def start_bytes(self) -> int | None:
        return self._memory.start_bytes

    def epoch_done(self, epochs_this_session: int) -> None:
        if self._track_epochs and epochs_this_session >= self._track_epochs:
            self.close()

    def close(self) -> None:
        if self._open:
            self._memory.__exit__(None, None, None)
            self._open, self.stats = False, self._memory.stats
