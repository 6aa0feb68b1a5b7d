"""OOM kills in a sandbox: the kernel's count of them for the sandbox's memory cgroup.

Rules:
- A sandbox's memory cgroup is found from any process of it (`/proc/PID/cgroup`): cgroup v1's
  `memory` controller (`memory.oom_control` holds `oom_kill N`) or v2's unified hierarchy
  (`memory.events` holds `oom_kill N`). The agent runs on the engine's host, so it reads them
  directly.
- A command was OOM-killed if the count grew while it ran. The count is per sandbox: a kill in
  another session of the same sandbox at the same time is reported too (it took the memory
  the command shared).
- Where no count can be read (no cgroup file, no permission), `count` is None and no command is
  reported as OOM-killed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._procs import PROC

CGROUP_ROOT = Path("/sys/fs/cgroup")


def counter_file(pid: int) -> Path | None:
    """The file holding the OOM-kill count of `pid`'s memory cgroup, or None."""
    try:
        lines = (PROC / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidate = CGROUP_ROOT / "memory" / path.lstrip("/") / "memory.oom_control"
            if candidate.exists():
                return candidate
        elif controllers == "":
            unified = path
    if unified is not None:
        for root in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
            candidate = root / unified.lstrip("/") / "memory.events"
            if candidate.exists():
                return candidate
    return None


def count(path: Path | None) -> int | None:
    """The OOM-kill count in `path` (from `counter_file`), or None if it cannot be read.

    Read twice per command, so with plain system calls: no file object, no decoding.
    """
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    text = b"\n" + text  # the key starts a line
    at = text.find(b"\noom_kill ")
    if at < 0:
        return None
    value = text[at + len(b"\noom_kill ") :].split(b"\n", 1)[0].strip()
    return int(value) if value.isdigit() else None


def grew(path: Path | None, before: int | None) -> bool:
    """Whether the count in `path` is now above `before`."""
    after = count(path)
    return before is not None and after is not None and after > before


__all__ = ["count", "counter_file", "grew"]
