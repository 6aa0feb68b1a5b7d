"""Signals to process trees of this host, found through /proc.

The agent runs on the host whose engine it drives, so a container's processes are host
processes: signalling them directly takes microseconds, where a `docker exec` of `kill` takes
tens of milliseconds and competes with the engine's small exec budget.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (all its threads'), or [] if it is gone."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid`, parents before children."""
    seen: list[int] = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.append(child)
        stack.extend(children(child))
    return seen


def signal_tree(pid: int, sig: int, *, include_root: bool) -> int:
    """Send `sig` to the descendants of `pid` (and `pid` itself); return how many got it."""
    if pid <= 1:
        return 0  # never 0 (our own process group), -1 (everyone) or init
    targets = descendants(pid)
    if include_root:
        targets.insert(0, pid)
    sent = 0
    for target in targets:
        try:
            os.kill(target, sig)
            sent += 1
        except (ProcessLookupError, PermissionError):
            pass
    return sent


def kill_tree(pid: int, *, include_root: bool = True) -> int:
    """SIGKILL a whole process tree."""
    return signal_tree(pid, signal.SIGKILL, include_root=include_root)


def now_ticks() -> int:
    """Now, in the clock ticks since boot that /proc uses for process start times."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def kill_started_since(pid: int, ticks: int) -> int:
    """SIGKILL the descendants of `pid` that started at or after `ticks`; return the count."""
    if pid <= 1:
        return 0
    killed = 0
    for target in descendants(pid):
        started = start_time(target)
        if started is not None and started >= ticks:
            try:
                os.kill(target, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
    return killed


def alive(pid: int) -> bool:
    """Whether a process exists (zombies count as gone)."""
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (tells a reused pid apart)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
