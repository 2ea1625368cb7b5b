"""Every kernel compiles to PTX for Hopper (sm_90) on this CPU-only machine: the checks the interpreter skips."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.mark.skipif(
    importlib.util.find_spec("triton.backends.nvidia") is None, reason="triton has no NVIDIA backend here"
)
def test_kernels_compile_for_sm90(interpreted, tmp_path) -> None:
    interpreted("checks_compile:all_kernels", interpret=False, env={"TRITON_CACHE_DIR": str(tmp_path)})
