"""The Triton kernels' tests run under Triton's interpreter on CPU tensors, each in a subprocess.

Triton fixes the interpreter mode of a process when it is first imported (its standard library is decorated
then), so each check runs in a fresh Python with ``TRITON_INTERPRET=1`` set before anything is imported: the
variable never reaches this process or other test modules, and what they imported does not matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed (pip install 'rece-bench[kernels]')")
pytest.importorskip("numpy", reason="Triton's interpreter needs numpy")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def interpreted():
    """Run ``module:function`` (from tests/kernels) under Triton's interpreter in a subprocess; fail with its
    output when it fails. ``interpret=False`` runs it without the interpreter (``env`` adds variables)."""

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
