"""Budget sizes as people write them.

``parse_size`` reads bytes with decimal units (``kB``/``MB``/``GB``/``TB`` and ``k``/``M``/``G``/``T``: powers of
1000) or binary ones (``KiB``/``MiB``/``GiB``/``TiB``: powers of 1024), case-insensitive, or a plain number of bytes
(``1.5e9``). ``512MB`` is 512,000,000 bytes; ``512MiB`` is 536,870,912.
"""

from __future__ import annotations

import math
import re

from rece_bench.errors import UserError
from rece_bench.memory import format_bytes

SIZE_EXAMPLE = "write it like 512MB, 2GB, 2GiB or 1.5e9 (bytes)"
_DECIMAL = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
_DECIMAL |= {"t": 10**12, "tb": 10**12}
_BINARY = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | float | int, what: str = "budget") -> int:
    """``'512MB'``, ``'2GiB'``, ``'1.5e9'`` -> bytes; garbage, zero or a negative size raise UserError."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in {**_DECIMAL, **_BINARY}:
        raise UserError(f"{what} {str(text)!r} is not a size: {SIZE_EXAMPLE}")
    value = float(match.group(1)) * {**_DECIMAL, **_BINARY}[unit]
    if not math.isfinite(value) or value < 1:
        raise UserError(f"{what} {str(text)!r} must be a positive size of at least 1 byte: {SIZE_EXAMPLE}")
    return int(round(value))


def format_size(n_bytes: int | None) -> str:
    """A budget as it was probably written: 300000000 -> '300 MB', 2**31 -> '2 GiB'; else binary units."""
    if n_bytes is None:
        return "-"
    decimal = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6))
    for unit, size in (*decimal, ("GiB", 2**30), ("MiB", 2**20), ("kB", 10**3), ("KiB", 2**10)):
        if n_bytes >= size and (n_bytes * 10) % size == 0:
            return f"{n_bytes / size:g} {unit}"
    return format_bytes(n_bytes)
