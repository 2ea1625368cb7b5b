"""The Triton exact linear CE under Triton's interpreter (checks in checks_linear_ce.py, one subprocess each)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "check",
    ["fp32", "half_precision_inputs"],
)
def test_linear_ce(interpreted, check: str) -> None:
    interpreted(f"checks_linear_ce:{check}")
