"""Files on disk: atomic writes (a reader sees the old file or the new one, never half of one) and the readers.

Every file the tool reads back (result JSON, meta.json, Parquet splits, checkpoints, probe caches, grid TOML) goes
through one reader here, which turns any damage (missing, truncated, not the expected kind of content) into a
``DamagedFile``: a ``UserError`` naming the file, what is wrong and the fix the caller gives. Heavy libraries
(pandas, torch) are imported inside the readers that need them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rece_bench import faults
from rece_bench.errors import UserError, one_line


class DamagedFile(UserError):
    """A file the tool wrote earlier cannot be read back; the message names it, why, and the fix."""

    def __init__(self, path: Path, why: str, fix: str) -> None:
        self.path, self.why = Path(path), why
        super().__init__(f"cannot read {path} ({why}): {fix}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "it is missing"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = one_line(exc, limit=120)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- readers


def read_bytes(path: Path, fix: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DamagedFile(path, _why(exc), fix) from None


def read_json(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object (a dict); anything else, or no valid JSON at all, is damage."""
    raw = read_bytes(path, fix)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        why = "empty" if not raw.strip() else f"not valid JSON: {_why(exc)}"
        raise DamagedFile(path, why, fix) from None
    if not isinstance(value, dict):
        raise DamagedFile(path, f"a JSON {type(value).__name__}, not an object", fix)
    return value


def read_toml(path: Path, fix: str) -> dict[str, Any]:
    """A TOML document (Python 3.11+)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UserError(f"reading {path} needs Python 3.11 or later (tomllib)") from None
    raw = read_bytes(path, fix)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DamagedFile(path, f"not valid TOML: {_why(exc)}", fix) from None


def read_parquet(path: Path, fix: str, columns: Sequence[str] = ()):
    """A Parquet file as a pandas DataFrame; missing ``columns`` count as damage."""
    import pandas as pd
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DamagedFile(path, _why(exc), fix) from None
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DamagedFile(path, f"no column {', '.join(missing)}", fix)
    return frame


def read_torch(path: Path, fix: str) -> Any:
    """A file written by ``torch.save``, loaded with ``weights_only=True``: tensors and plain containers only, so
    no code in the file runs. Whatever the decoder raises (a truncated zip, an unpickling error, a foreign
    global) is damage."""
    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - the decoder's errors (and a missing file) have no common base
        raise DamagedFile(path, _why(exc), fix) from None


# ---------------------------------------------------------------- writers


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with atomic_writer(path) as handle:
        handle.write(data)


class atomic_writer:  # noqa: N801 - used like open()
    """``with atomic_writer(path) as handle:`` writes a temporary file beside ``path``, fsyncs it and renames it
    over ``path``; on any error the temporary file is removed and ``path`` is left as it was."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; our files are readable as open() makes them
        self._handle = faults.during_write(os.fdopen(fd, "wb"), self.path.name)  # a test hook, off by default
        return self._handle

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._handle.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        if exc_type is not None:
            Path(self._tmp).unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask (read by setting it, then put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def remove_stale_temporaries(folder: Path, name: str) -> None:
    """Temporary files an atomic write of ``folder/name`` left behind when its process was killed."""
    for stale in Path(folder).glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)
