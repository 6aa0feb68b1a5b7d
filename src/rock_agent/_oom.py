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
- The count is read twice per session command, so a counter file stays open once read (at
  most `KEEP_OPEN` of them, the least recently read closed first) and is read again with one
  `pread`: an open, a read and a close cost three times that. A file of a cgroup that is gone
  (its container restarted or removed) answers ENODEV: it is closed and opened again.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from pathlib import Path

from ._procs import PROC

CGROUP_ROOT = Path("/sys/fs/cgroup")
KEEP_OPEN = 256  # counter files kept open between reads

_open: OrderedDict[Path, int] = OrderedDict()  # counter file -> its open descriptor


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

    Read twice per command, so with plain system calls: no file object, no decoding, and the
    file kept open (see the rules).
    """
    if path is None:
        return None
    text = _read(path)
    if text is None:
        return None
    text = b"\n" + text  # the key starts a line
    at = text.find(b"\noom_kill ")
    if at < 0:
        return None
    value = text[at + len(b"\noom_kill ") :].split(b"\n", 1)[0].strip()
    return int(value) if value.isdigit() else None


def _read(path: Path) -> bytes | None:
    """What `path` holds now, through its kept descriptor if it has one; None if unreadable."""
    fd = _open.get(path)
    if fd is not None:
        try:
            text = os.pread(fd, 4096, 0)
        except OSError:  # its cgroup is gone: a new one may have its name
            _close(path)
        else:
            _open.move_to_end(path)
            return text
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.pread(fd, 4096, 0)
    except OSError:
        os.close(fd)
        return None
    _open[path] = fd
    while len(_open) > KEEP_OPEN:
        _close(next(iter(_open)))
    return text


def _close(path: Path) -> None:
    fd = _open.pop(path, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def grew(path: Path | None, before: int | None) -> bool:
    """Whether the count in `path` is now above `before`."""
    after = count(path)
    return before is not None and after is not None and after > before


__all__ = ["count", "counter_file", "grew"]
