"""`rock-agent ensure`: the on-demand mode. Start a socket agent unless one answers already.

A core that reaches a host over SSH and finds no agent service runs this once over an exec
channel, reads the JSON line it prints, and forwards a stream-local channel to the socket
named there. The agent it starts outlives the SSH link, so owner leases (not the link) decide
when sandboxes are reaped; it exits by itself after `--idle-exit` seconds with nothing to do.
Two cores running `ensure` at once start one agent: a lock file serialises the check.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from ._version import AGENT_VERSION

START_TIMEOUT = 20.0


def agent_answers(path: Path) -> bool:
    """True if something accepts connections on the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def ensure_running(args: argparse.Namespace) -> int:
    """Print ``{"socket": ..., "started": ...}`` once an agent listens on `args.socket`."""
    path = Path(args.socket)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            started = False
            if not agent_answers(path):
                _start(args, path)
                started = True
    except (OSError, RuntimeError) as exc:
        print(f"rock-agent ensure: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"socket": str(path), "started": started, "version": AGENT_VERSION}))
    return 0


def _start(args: argparse.Namespace, path: Path) -> None:
    log_path = path.with_name("agent.log")
    command = [
        sys.executable,
        "-m",
        "rock_agent",
        "serve",
        "--socket",
        str(path),
        "--host-id",
        args.host_id,
        "--log-level",
        args.log_level,
        "--lease",
        str(args.lease),
        "--idle-exit",
        str(args.idle_exit),
    ]
    if args.docker:
        command += ["--docker", args.docker]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the SSH session that ran `ensure`
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not agent_answers(path):
        if process.poll() is not None:
            raise RuntimeError(
                f"the agent exited with status {process.returncode} before listening on {path};"
                f" its log ({log_path}) ends with:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                process.kill()
            raise RuntimeError(f"the agent did not listen on {path} within {START_TIMEOUT:g} s")
        time.sleep(0.02)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


__all__ = ["agent_answers", "ensure_running"]
