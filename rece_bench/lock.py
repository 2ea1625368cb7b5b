"""An exclusive lock per run, so that two identical runs started at the same moment cannot both train.

The lock is ``fcntl.flock`` on ``locks/<run id>.lock`` under the results root: taking it is one atomic system call,
so of two processes that start together exactly one holds it, and the kernel lets it go when its process ends
however it ends, so the lock of a killed run is taken over by the next start with no clean-up. The file holds
the pid and host of the holder, for the message of the one refused, and its holder deletes it when it lets go;
a process that locked a file that was deleted meanwhile tries again, so two processes never hold two files of one
name. Where ``fcntl`` does not exist (Windows) runs are not locked, and the live-run check of the result remains.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from rece_bench.errors import UserError

LOCKS_DIR = "locks"


def lock_path(results_root: Path, run_id: str) -> Path:
    return Path(results_root) / LOCKS_DIR / f"{run_id}.lock"


class RunLock:
    """``RunLock(path, run_id).acquire()`` holds the lock or raises a UserError naming the holder; ``release()``
    lets go and deletes the file."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path, self.run_id = Path(path), run_id
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides, as for every file we write
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise UserError(
                    f"run {self.run_id} is already running ({holder}): wait for it, or stop it and run again "
                    "with --resume"
                ) from None
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # its holder deleted it between our open and our lock: lock the file now at the path
                os.close(fd)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before closing: a waiter that locks the old file sees it is gone
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)
