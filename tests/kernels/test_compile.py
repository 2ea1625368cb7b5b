"""Every kernel compiles to PTX for Hopper (sm_90) on this CPU-only machine: the checks the interpreter skips."""

from __future__ import annotations

import importlib.util

import pytest


def test_kernels_compile_for_sm90(interpreted, tmp_path) -> None:
    if importlib.util.find_spec("triton") is not None and importlib.util.find_spec("triton.backends.nvidia") is None:
        pytest.skip("triton has no NVIDIA backend here")
    interpreted("checks_compile:all_kernels", interpret=False, env={"TRITON_CACHE_DIR": str(tmp_path)})
