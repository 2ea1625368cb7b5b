"""Fault injection for the tests: kill this process with SIGKILL at a chosen point, as `kill -9` would.

Off unless ``RECE_BENCH_FAULT`` is set (to one spec):

- ``step:N``: at the N-th training step of this process (after the step, before the next), where ``after_step`` is
  called: the tests' subprocesses wrap ``training.driver.train_step`` with it (training itself knows nothing of faults);
- ``write:NAME:K:N``: during the K-th atomic write of a file whose name matches NAME (fnmatch), once N bytes of
  it are on disk.

The process dies without cleanup, so the tests see exactly what a real kill leaves behind.
"""

from __future__ import annotations

import fnmatch
import os
import signal

ENV = "RECE_BENCH_FAULT"
_counts: dict[str, int] = {}


def _spec() -> list[str]:
    return os.environ.get(ENV, "").split(":")


def _nth(key: str, n: int) -> bool:
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key] == n


def kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def after_step() -> None:
    spec = _spec()
    if spec[0] == "step" and _nth("step", int(spec[1])):
        kill_now()


def during_write(handle, name: str):
    """``handle``, or a wrapper that kills the process part-way through this write when the spec names it."""
    spec = _spec()
    if spec[0] != "write" or not fnmatch.fnmatch(name, spec[1]) or not _nth(f"write:{spec[1]}", int(spec[2])):
        return handle
    return _KillAfter(handle, int(spec[3]))


class _KillAfter:
    """A binary file handle that writes the first ``limit`` bytes, syncs them and kills the process."""

    def __init__(self, handle, limit: int) -> None:
        self._handle, self._left = handle, limit

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) >= self._left:
            self._handle.write(data[: self._left])
            self._handle.flush()
            os.fsync(self._handle.fileno())
            kill_now()
        self._left -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self._handle, name)
