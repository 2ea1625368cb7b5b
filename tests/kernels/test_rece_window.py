"""The Triton RECE window kernels under Triton's interpreter (checks in checks_rece_window.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("check", ["one_round", "three_rounds", "half_precision_two_rounds", "rejects_bad_plan"])
def test_rece_window(interpreted, check: str) -> None:
    interpreted(f"checks_rece_window:{check}")
