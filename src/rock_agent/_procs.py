"""Signals to process trees of this host, found through /proc.

The agent runs on the host whose engine it drives, so a container's processes are host
processes: signalling them directly takes microseconds, where a `docker exec` of `kill` takes
tens of milliseconds and competes with the engine's small exec budget.

Rules:
- A process that leaves its parent's tree (`(cmd &)`, `setsid`, a daemon's double fork) is
  re-parented to the container's init and is no longer a descendant of the shell that started
  it. Such processes are found among the sandbox's processes (its cgroup's `cgroup.procs`, or
  the processes of the shell's pid namespace) by a mark in their environment
  (`ROCK_CMD=<token>`, see `_wrap`), which children inherit.
- Never signal pid 0, -1 or 1, and never a process outside the sandbox of the given shell.
- A signal the kernel refuses (`EPERM`: an agent that is not root) is counted as not sent;
  callers learn it from the return value.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


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


def sandbox_pids(pid: int) -> list[int]:
    """Every process of the sandbox that `pid` belongs to (host pids), or [] if it is gone."""
    found = _cgroup_procs(pid)
    if found is not None:
        return found
    try:
        namespace = os.readlink(PROC / str(pid) / "ns" / "pid")
    except OSError:
        return []
    same = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == namespace:
                    same.append(int(entry.name))
    return same


def _cgroup_procs(pid: int) -> list[int] | None:
    try:
        lines = (PROC / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(",") or controllers == "":
            root = CGROUP_ROOT / "pids" if controllers else CGROUP_ROOT
            if not controllers and not (root / path.lstrip("/")).is_dir():
                root = CGROUP_ROOT / "unified"
            if path in ("/", "") and not controllers:
                continue  # the root of the hierarchy: not a container's own cgroup
            with contextlib.suppress(OSError, ValueError):
                text = (root / path.lstrip("/") / "cgroup.procs").read_text()
                return [int(p) for p in text.split()]
    return None


def marked(pid: int, mark: bytes, *, prefix: bool = False) -> bool:
    """Whether `pid`'s environment holds `mark` (`NAME=value`; `prefix`: a value starting so)."""
    try:
        env = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    for entry in env.split(b"\0"):
        if entry == mark or (prefix and entry.startswith(mark)):
            return True
    return False


def command_pids(shell: int, mark: bytes, since: int, *, prefix: bool = False) -> list[int]:
    """The processes a command of `shell` started: its descendants started at or after
    `since`, and every process of the sandbox holding `mark` (see `marked`); never `shell`."""
    if shell <= 1:
        return []
    found = [p for p in descendants(shell) if (start_time(p) or -1) >= since]
    for candidate in sandbox_pids(shell):
        if candidate in (shell, 1) or candidate in found:
            continue
        if (start_time(candidate) or -1) >= since and marked(candidate, mark, prefix=prefix):
            found.append(candidate)
    return found


def signal_pids(pids: list[int], sig: int) -> int:
    """Send `sig` to each of `pids` (never 0, -1 or 1); return how many got it."""
    sent = 0
    for target in pids:
        if target <= 1:
            continue
        try:
            os.kill(target, sig)
            sent += 1
        except (ProcessLookupError, PermissionError):
            pass
    return sent


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
