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
- What the kernel refuses (`EPERM`: an agent that is not root may not signal root's processes
  nor read their environment) is reported, never taken as done: `signal_pids` returns the
  refused pids and `mark_of` raises `PermissionError`. `_signals` then asks the sandbox.
- Reading a process's tree, start time, cgroup and `NSpid` needs no privilege.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")
MARK = b"ROCK_CMD"  # the environment variable that names the command a process belongs to
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


def tree(pid: int, *, include_root: bool, since: int = 0) -> list[int]:
    """`pid`'s descendants started at or after `since` (and `pid` first); [] for pid 0, -1
    or 1."""
    if pid <= 1:
        return []  # never 0 (our own process group), -1 (everyone) or init
    found = descendants(pid)
    if since:
        found = [p for p in found if (start_time(p) or -1) >= since]
    return [pid, *found] if include_root else found


def signal_tree(pid: int, sig: int, *, include_root: bool) -> int:
    """Send `sig` to the descendants of `pid` (and `pid` itself); return how many got it."""
    targets = tree(pid, include_root=include_root)
    return len(targets) - len(signal_pids(targets, sig)) if targets else 0


def kill_tree(pid: int, *, include_root: bool = True) -> int:
    """SIGKILL a whole process tree (what the kernel refuses is not sent: see `_signals`)."""
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


def mark_of(pid: int) -> bytes | None:
    """The value of `MARK` in `pid`'s environment; None if it has none or is gone.

    `PermissionError` if the kernel refuses to show the environment (an agent that is not
    root): the mark is then unknown, not absent.
    """
    try:
        fd = os.open(PROC / str(pid) / "environ", os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        raise
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except PermissionError:
        raise  # the check is made at read time on some kernels
    except OSError:
        return None
    finally:
        os.close(fd)
    return value_of(b"".join(chunks), MARK)


def value_of(environ: bytes, name: bytes) -> bytes | None:
    """The value of `name` in an environment block (`NAME=value` entries split by NUL)."""
    key = name + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key) :]
    return None


def candidates(shell: int, since: int) -> tuple[list[int], list[int]]:
    """The processes a command of `shell` may have started, `since` (in /proc clock ticks):
    (its descendants started since, the other processes of the sandbox started since).

    The first are the command's for sure; the others are the command's if they hold its mark
    (see `mark_of`). Neither ever holds `shell`, pid 1 or a zombie.
    """
    if shell <= 1:
        return [], []
    tree_pids = tree(shell, include_root=False, since=since)
    others = []
    for candidate in sandbox_pids(shell):
        if candidate in (shell, 1) or candidate in tree_pids:
            continue
        if (start_time(candidate) or -1) >= since and alive(candidate):
            others.append(candidate)
    return tree_pids, others


def signal_pids(pids: list[int], sig: int) -> list[int]:
    """Send `sig` to each of `pids` (never 0, -1 or 1); return those the kernel refused
    (`EPERM`: an agent that is not root). A process that is gone counts as done."""
    refused = []
    for target in pids:
        if target <= 1:
            continue
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            refused.append(target)
    return refused


def ns_pids(pid: int) -> list[int]:
    """`pid` as each pid namespace it is in sees it, outermost first (`NSpid:`); [] if gone.

    Anyone may read it: it is how an agent that is not root names a sandbox's process to the
    sandbox.
    """
    try:
        status = (PROC / str(pid) / "status").read_bytes()
    except OSError:
        return []
    at = status.find(b"\nNSpid:")
    if at < 0:
        return []
    fields = status[at + len(b"\nNSpid:") :].split(b"\n", 1)[0].split()
    return [int(f) for f in fields if f.isdigit()]


def now_ticks() -> int:
    """Now, in the clock ticks since boot that /proc uses for process start times."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


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
