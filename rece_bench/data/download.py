"""Resumable, verified downloads into ``<data root>/raw/``.

Bytes go to ``<file>.part``; a cut connection resumes from the part's length with an HTTP Range request
(also on the next run). Once complete, the size and sha256 are checked when known: a mismatch removes the
part and raises, so no unverified file is ever left under the final name. Progress goes to a callback
``(done_bytes, total_bytes)``.

Transient failures are retried with exponential backoff (``DownloadConfig.backoff_s``, doubling, at most
``MAX_WAIT_S``, or the server's Retry-After): HTTP 429, 500, 502, 503 and 504, a refused, reset or timed-out
connection, and a body cut short; a name that does not resolve (offline) and other HTTP errors fail at once.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rece_bench.errors import UserError

ProgressCallback = Callable[[int, "int | None"], None]
CHUNK_BYTES = 1 << 20
USER_AGENT = "rece-bench (dataset download)"


RETRY_STATUSES = (429, 500, 502, 503, 504)  # busy or failing for a while: worth another try
MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class DownloadConfig:
    retries: int = 5  # further tries after a transient failure (a cut, a 5xx or 429, a refused connection)
    timeout_s: float = 60.0
    chunk_bytes: int = CHUNK_BYTES
    backoff_s: float = 1.0  # the wait before the first retry; doubled before each next one

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"DownloadConfig.retries must be >= 0, got {self.retries}")
        if self.timeout_s <= 0 or self.chunk_bytes <= 0:
            raise ValueError("DownloadConfig.timeout_s and chunk_bytes must be positive")


class _Cut(Exception):
    """A transient failure: the connection ended before the body did, the server answered 429 or 5xx, or the
    connection was refused or timed out. ``final`` is the error to give when the retries are spent."""

    def __init__(self, why: str, final: str | None = None, wait_s: float | None = None) -> None:
        super().__init__(why)
        self.final, self.wait_s = final, wait_s


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After", "") if exc.headers is not None else ""
    return min(float(value), MAX_WAIT_S) if value.strip().isdigit() else None


def sha256_of(path: Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout_s: float) -> http.client.HTTPResponse | None:
    """The response from ``offset`` on; None when the server says the part is already whole (416)."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None
        if exc.code in RETRY_STATUSES:
            final = f"download of {url} failed: HTTP {exc.code} {exc.reason}, also on retrying: the server is busy "
            raise _Cut(f"HTTP {exc.code}", final + "or down; run the command again later, or pass --raw PATH",
                       _retry_after(exc)) from None  # fmt: skip
        raise UserError(
            f"download of {url} failed: HTTP {exc.code} {exc.reason}: the file may have moved; "
            "download it by hand and pass --raw PATH"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        final = f"cannot reach {url} ({reason}): check the network, or pass --raw PATH"
        if isinstance(reason, socket.gaierror):  # the name does not resolve: offline, no use trying again
            raise UserError(final) from None
        raise _Cut(str(reason), final) from None


def _total_bytes(response: http.client.HTTPResponse, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _fetch_once(url: str, part: Path, config: DownloadConfig, progress: ProgressCallback | None) -> int | None:
    """Append what the server sends to ``part``; returns the total size when the server said it."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, config.timeout_s)
    if response is None:
        return offset
    with response:
        if offset and response.status != 206:  # the server ignored the Range: start over
            offset = 0
        total = _total_bytes(response, offset)
        with open(part, "ab" if offset else "wb") as handle:
            done = offset
            while True:
                try:
                    block = response.read(config.chunk_bytes)
                except (TimeoutError, http.client.IncompleteRead, ConnectionError) as exc:
                    raise _Cut(str(exc)) from None
                if not block:
                    break
                handle.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise _Cut(f"got {done} of {total} bytes")
    return total


def _verify(part: Path, url: str, size_bytes: int | None, sha256: str | None) -> None:
    size = part.stat().st_size
    problem = None
    if size_bytes is not None and size != size_bytes:
        problem = f"size {size} bytes, expected {size_bytes}"
    elif sha256 is not None and sha256_of(part) != sha256.lower():
        problem = f"sha256 does not match {sha256}"
    if problem:
        part.unlink(missing_ok=True)
        raise UserError(f"download of {url} is corrupt ({problem}) and was removed: run the command again")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size_bytes: int | None = None,
    progress: ProgressCallback | None = None,
    config: DownloadConfig | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it and return ``dest``."""
    config = config or DownloadConfig()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(config.retries + 1):
        try:
            _fetch_once(url, part, config, progress)
            break
        except _Cut as exc:
            if attempt == config.retries:
                raise UserError(
                    exc.final
                    or f"download of {url} kept being cut ({exc}); {part} keeps what arrived: "
                    "run the command again to resume"
                ) from None
            time.sleep(exc.wait_s if exc.wait_s is not None else min(config.backoff_s * 2**attempt, MAX_WAIT_S))
    _verify(part, url, size_bytes, sha256)
    os.replace(part, dest)
    return dest


def cached_or_download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size_bytes: int | None = None,
    progress: ProgressCallback | None = None,
    config: DownloadConfig | None = None,
) -> Path:
    """``dest`` if it is already there (and matches a known size and sha256), else a fresh download."""
    dest = Path(dest)
    size_ok = dest.is_file() and (size_bytes is None or dest.stat().st_size == size_bytes)
    if size_ok and (sha256 is None or sha256_of(dest) == sha256.lower()):
        return dest
    return download(url, dest, sha256=sha256, size_bytes=size_bytes, progress=progress, config=config)
