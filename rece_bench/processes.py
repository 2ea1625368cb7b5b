"""Is a process still there? Used to tell a run, a prepare or a Ray task that was killed from one still at work."""

from __future__ import annotations

import os
from pathlib import Path


def process_exists(pid: int) -> bool:
    """True while a process ``pid`` exists on this host (another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def process_start(pid: int) -> str | None:
    """Linux: the boot id and the start time of process ``pid``; None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": state is first, the start time 20th
    return None if fields[0] == "Z" else f"{boot}/{fields[19]}"  # a zombie has ended
