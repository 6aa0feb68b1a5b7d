"""Owner identities: who created a sandbox, and whether that owner is still alive.

A program that embeds the core is an owner. A local owner's identity names its host, pid and
the pid's start time (so a reused pid is not mistaken for the owner):
``local:<hostname>:<pid>:<start-ticks>:<nonce>``. An agent on the same host can check it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path


def _start_ticks(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def local_owner(pid: int | None = None) -> str:
    """The identity of this process as an owner."""
    pid = os.getpid() if pid is None else pid
    return f"local:{socket.gethostname()}:{pid}:{_start_ticks(pid)}:{secrets.token_hex(4)}"


def local_owner_alive(
    owner: str,
    hostname: str,
    alive: Callable[[int], bool],
    start_time: Callable[[int], int | None],
) -> bool | None:
    """True/False for a local owner of `hostname`; None when this host cannot tell."""
    parts = owner.split(":")
    if len(parts) != 5 or parts[0] != "local" or parts[1] != hostname:
        return None
    try:
        pid, ticks = int(parts[2]), int(parts[3])
    except ValueError:
        return None
    if not alive(pid):
        return False
    return ticks == 0 or start_time(pid) == ticks
