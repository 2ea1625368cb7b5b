"""The CPU allocator setting every rece-bench command applies (rece_bench.memory.keep_freed_memory)."""

from __future__ import annotations

import platform

import pytest
import torch

from rece_bench.memory import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_takes_on_glibc_and_large_blocks_still_work():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    for _ in range(3):  # blocks above glibc's 32 MiB mmap threshold, freed and served again from the heap
        block = torch.full((48 << 20,), 7, dtype=torch.uint8)
        assert int(block[0]) == 7 and int(block[-1]) == 7
        del block


def test_cli_applies_it_only_when_asked(monkeypatch):
    from typer.testing import CliRunner

    import rece_bench.memory
    from rece_bench.cli import app

    calls = []
    monkeypatch.setattr(rece_bench.memory, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv("RECE_BENCH_KEEP_FREED_MEMORY", raising=False)
    assert CliRunner().invoke(app, ["version"]).exit_code == 0 and calls == []  # glibc's default unless asked
    monkeypatch.setenv("RECE_BENCH_KEEP_FREED_MEMORY", "1")
    assert CliRunner().invoke(app, ["version"]).exit_code == 0 and calls == [1]
