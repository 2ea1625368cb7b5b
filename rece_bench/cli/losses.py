"""Commands of the losses area (registered on the shared app)."""

from __future__ import annotations

from rece_bench.cli import app  # noqa: F401
