"""Tests of the data area; helpers shared by them and by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GOWALLA_SAMPLE = "gowalla_nyc.txt.gz"
BEAUTY_SAMPLE = "beauty_s3rec.txt"


def shared_file(name: str) -> Path:
    """A real sample from ../shared/data, or a skip saying it is missing."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real sample {path} is absent (it lives in ../shared/data beside the repo)")
    return path
