"""The fake runtime's freezer: a paused fake sandbox's processes are stopped with SIGSTOP.

Rules:
- `freeze` stops every process carrying the sandbox's mark and returns once each is seen
  stopped (or gone), as the engine's freezer returns once the cgroup is frozen; it looks
  again for processes forked meanwhile, so none is left running.
- `thaw` continues them all (SIGCONT). Both are blocking (they read /proc): run them in a
  thread.
"""

from __future__ import annotations

import signal
import time

from . import _fake_procs, _procs

SETTLE = 5.0  # seconds a process may take to stop before the freeze gives up on it
_STOPPED = ("T", "t")


def _state(pid: int) -> str:
    try:
        return (_procs.PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""  # gone


def freeze(container_id: str) -> None:
    """SIGSTOP every process of the fake container and wait until they are all stopped."""
    deadline = time.monotonic() + SETTLE
    while True:
        pids = _fake_procs.marked(container_id)
        running = [pid for pid in pids if _state(pid) not in ("", *_STOPPED)]
        if not running or time.monotonic() > deadline:
            return
        _procs.signal_pids(running, signal.SIGSTOP)
        time.sleep(0.001)


def thaw(container_id: str) -> None:
    """SIGCONT every process of the fake container."""
    _procs.signal_pids(_fake_procs.marked(container_id), signal.SIGCONT)


__all__ = ["freeze", "thaw"]
