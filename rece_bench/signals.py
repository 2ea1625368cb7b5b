"""One stop policy for every command: SIGTERM (what `kill`, SLURM and Kubernetes send) is Ctrl-C.

Either one raises KeyboardInterrupt in the main thread. A training run then saves its result as ``interrupted``
with how to go on (its last checkpoint stays for ``--resume``); the command prints one line saying so and exits
with ``INTERRUPTED_EXIT`` (130, the shell's code for a Ctrl-C), whichever signal stopped it. A second signal while
the first is being handled is the same KeyboardInterrupt again; SIGKILL cannot be caught (the run shows ``killed``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

INTERRUPTED_EXIT = 130


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise KeyboardInterrupt from now on; returns the function that puts the previous handler back.

    Outside the main thread (where no handler can be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)
