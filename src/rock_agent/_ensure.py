"""`rock-agent ensure`: the on-demand mode. Start a socket agent unless one answers already.

A core that reaches a host over SSH and finds no agent service runs this once over an exec
channel, reads the JSON line it prints, and forwards a stream-local channel to the socket
named there. The agent it starts outlives the SSH link, so owner leases (not the link) decide
when sandboxes are reaped; it exits by itself after `--idle-exit` seconds with nothing to do.
Two cores running `ensure` at once start one agent: a lock file serialises the check.

Rules:
- The socket's folder is this user's alone: a real folder (not a symbolic link) owned by this
  user (or root) that no other user may write to. Anything else is refused (`EXIT_UNSAFE`)
  before it is used: in a folder another user made (``/tmp/rock-agent-UID`` squatted before
  this user's first `ensure`), that user could put their own socket, and `ensure` would hand
  it out as this user's agent. So is a socket there that another user owns.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from ._version import AGENT_VERSION

START_TIMEOUT = 20.0
EXIT_UNSAFE = 3  # the socket's folder (or the socket) is not this user's alone


def socket_problem(path: Path, uid: int | None = None) -> str | None:
    """Why the agent socket `path` may not be used by user `uid` (default: this one); None
    if it may. A folder or socket that does not exist yet is no problem."""
    uid = os.geteuid() if uid is None else uid
    fix = "remove it, or choose another --socket"
    for what, noun, where, kind in (
        ("the socket folder", "folder", path.parent, stat.S_ISDIR),
        ("the socket", "socket", path, stat.S_ISSOCK),
    ):
        try:
            st = os.lstat(where)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot check {what} {where}: {exc.strerror or exc}"
        if stat.S_ISLNK(st.st_mode):
            return f"{what} {where} is a symbolic link: {fix}"
        if not kind(st.st_mode):
            return f"{where} is not a {noun}: {fix}"
        if st.st_uid not in (uid, 0):
            return (
                f"{what} {where} belongs to uid {st.st_uid}, not to this user "
                f"(uid {uid}): another user may have made it to pose as this user's agent; {fix}"
            )
        if noun == "folder" and st.st_mode & 0o022:
            return (
                f"the socket folder {where} may be written by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): make it 0700, or choose another --socket"
            )
    # Above the folder, no other user may swap it for theirs (a sticky folder such as /tmp
    # lets no one rename another's entries).
    above = Path(os.path.realpath(path.parent.parent))
    for where in (above, *above.parents):
        try:
            st = os.stat(where)
        except OSError:
            continue
        shared = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if st.st_uid not in (uid, 0) or shared:
            return (
                f"{where}, above the socket folder, may be changed by another user: "
                "choose another --socket"
            )
    return None


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
        problem = socket_problem(path)
        if problem is None and not os.path.lexists(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            problem = socket_problem(path)
        if problem is not None:
            print(f"rock-agent ensure: {problem}", file=sys.stderr)
            return EXIT_UNSAFE
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
    command += ["--runtime", args.runtime]
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


__all__ = ["EXIT_UNSAFE", "agent_answers", "ensure_running", "socket_problem"]
