"""Rewriting a small record file that every agent process of a host shares.

Rules:
- A rewrite holds an exclusive lock (a `.lock` file beside the record) from its read to its
  write, so concurrent agents never lose each other's updates.
- The new content replaces the file atomically (a temporary file, then `os.replace`), so a
  reader never sees half of it.
- Blocking file I/O: call it in a worker thread.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def rewrite(path: Path, content: Callable[[], bytes]) -> None:
    """Replace `path` with what `content()` returns; `content` runs under the lock, so it may
    read the record and build on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = content()
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_bytes(data)
        os.replace(temporary, path)


__all__ = ["rewrite"]
