"""The Triton kernels' tests run under Triton's interpreter on CPU tensors, each in a subprocess.

Triton fixes the interpreter mode of a process when it is first imported (its standard library is decorated
then), so each check runs in a fresh Python with ``TRITON_INTERPRET=1`` set before anything is imported: the
variable never reaches this process or other test modules, and what they imported does not matter.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def interpreted():
    """Run ``module:function`` (from tests/kernels) under Triton's interpreter in a subprocess; fail with its
    output when it fails. ``interpret=False`` runs it without the interpreter (``env`` adds variables). Skips
    (with the reason) only where triton or numpy is not installed."""
    for module, why in (("triton", "pip install 'rece-bench[kernels]'"), ("numpy", "Triton's interpreter needs it")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed ({why})")

    def run(target: str, interpret: bool = True, env: dict[str, str] | None = None) -> str:
        module, function = target.split(":")
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **(env or {}))
        env.pop("TRITON_INTERPRET", None)
        if interpret:
            env["TRITON_INTERPRET"] = "1"
        code = f"import tests.kernels.{module} as m; m.{function}()"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(
                f"{target} (TRITON_INTERPRET={int(interpret)}) failed:\n{done.stdout[-3000:]}{done.stderr[-6000:]}"
            )
        return done.stdout

    return run
