"""Torch's CPU threads: one policy for every command that trains or benchmarks.

Policy: a job gets as many intra-op threads as the CPUs it is given, and a job runs on one CPU unless told
otherwise (``--threads N``; a Ray job is given ``--cpus-per-job`` CPUs). So the default is one thread per job,
whatever the machine. Why: torch's own default (one thread per core) lets OpenMP threads wait at every op for a
sibling that the scheduler put aside, and losses made of many small ops pay that wait at each one. On a busy
2-core machine RECE's step took 5-9x longer at torch's default than at one thread while CE's barely changed, which
turned the benchmark's main comparison upside down (issue 23); at one thread the ratio between losses is the same
on a quiet and a busy machine, and a local sweep times its jobs as a Ray sweep with one CPU per job does. A user
with an idle many-core machine and one job passes ``--threads`` with the core count and the result records it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

from rece_bench.errors import UserError

T = TypeVar("T")
DEFAULT_THREADS = 1  # per job; see the module docstring


def job_threads(threads: int | None, cpus_per_job: int = 1) -> int:
    """The threads of one job: ``threads`` when given, else the CPUs the job is given (the policy's default)."""
    chosen = cpus_per_job * DEFAULT_THREADS if threads is None else threads
    check_threads(chosen)
    return chosen


def check_threads(threads: object) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a whole number of at least 1, got {threads!r}: pass --threads 1")


@contextlib.contextmanager
def using_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` for the block (None: left as they are), then restored."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_config_threads(function: Callable[..., T]) -> Callable[..., T]:
    """Decorate a function whose first argument is a config with a ``threads`` field: it runs under those threads."""

    @functools.wraps(function)
    def wrapper(config, *args, **kwargs):
        with using_threads(config.threads):
            return function(config, *args, **kwargs)

    return wrapper
