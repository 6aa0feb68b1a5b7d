"""`rock-agent ensure` (and `serve --socket`) use a socket folder only if it is this user's alone.

A folder another user made first (``/tmp/rock-agent-UID`` squatted before this user's first
`ensure`) could hold that user's socket, which `ensure` would hand out as this user's agent.
Run as root, these tests make such folders and sockets with another owner (uid 65534).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_agent._ensure import EXIT_UNSAFE, socket_problem

OTHER = 65534
FIX = "remove it, or choose another --socket"

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="making files of another user needs root")


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rock_agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def listening() -> Iterator[list[socket.socket]]:
    """Sockets a test listens on (a squatter's), closed afterwards."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def listen(path: Path, made: list[socket.socket]) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen()
    made.append(sock)


@as_root
def test_ensure_refuses_a_folder_another_user_made_and_its_socket(
    tmp_path: Path, listening: list[socket.socket]
) -> None:
    squat = tmp_path / "rock-agent-0"
    squat.mkdir(mode=0o700)
    listen(squat / "agent.sock", listening)  # the squatter's own agent, or anything
    os.chown(squat / "agent.sock", OTHER, OTHER)
    os.chown(squat, OTHER, OTHER)
    done = agent("ensure", env={"ROCK_AGENT_SOCKET": str(squat / "agent.sock")})
    assert (done.returncode, done.stdout) == (EXIT_UNSAFE, "")
    assert done.stderr == (
        f"rock-agent ensure: the socket folder {squat} belongs to uid {OTHER}, not to this user "
        f"(uid 0): another user may have made it to pose as this user's agent; {FIX}\n"
    )
    assert sorted(p.name for p in squat.iterdir()) == ["agent.sock"]  # nothing made in it


@as_root
def test_ensure_refuses_a_socket_of_another_user_in_its_own_folder(
    tmp_path: Path, listening: list[socket.socket]
) -> None:
    path = tmp_path / "agent.sock"
    listen(path, listening)
    os.chown(path, OTHER, OTHER)
    done = agent("ensure", "--socket", str(path))
    assert (done.returncode, done.stdout) == (EXIT_UNSAFE, "")
    assert done.stderr == (
        f"rock-agent ensure: the socket {path} belongs to uid {OTHER}, not to this user "
        f"(uid 0): another user may have made it to pose as this user's agent; {FIX}\n"
    )


def test_ensure_refuses_a_folder_others_may_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = agent("ensure", "--socket", str(shared / "agent.sock"))
    assert (done.returncode, done.stdout) == (EXIT_UNSAFE, "")
    assert done.stderr == (
        f"rock-agent ensure: the socket folder {shared} may be written by other users "
        "(mode 0777): make it 0700, or choose another --socket\n"
    )
    assert list(shared.iterdir()) == []


def test_ensure_refuses_a_symbolic_link_for_its_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    done = agent("ensure", "--socket", str(tmp_path / "link" / "agent.sock"))
    assert (done.returncode, done.stdout) == (EXIT_UNSAFE, "")
    assert done.stderr == (
        f"rock-agent ensure: the socket folder {tmp_path / 'link'} is a symbolic link: {FIX}\n"
    )


@as_root
def test_ensure_refuses_a_folder_inside_one_another_user_controls(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    (theirs / "mine").mkdir(parents=True, mode=0o700)
    os.chown(theirs, OTHER, OTHER)
    done = agent("ensure", "--socket", str(theirs / "mine" / "agent.sock"))
    assert (done.returncode, done.stdout) == (EXIT_UNSAFE, "")
    assert done.stderr == (
        f"rock-agent ensure: {theirs}, above the socket folder, may be changed by another "
        "user: choose another --socket\n"
    )


@as_root
def test_serve_refuses_a_folder_another_user_made(tmp_path: Path) -> None:
    squat = tmp_path / "squat"
    squat.mkdir(mode=0o755)
    os.chown(squat, OTHER, OTHER)
    done = agent("serve", "--socket", str(squat / "agent.sock"))
    assert (done.returncode, done.stdout) == (EXIT_UNSAFE, "")
    assert done.stderr.startswith(f"rock-agent serve: the socket folder {squat} belongs to uid ")
    assert list(squat.iterdir()) == []


def test_a_private_folder_a_root_folder_and_none_yet_are_fine(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    assert socket_problem(mine / "agent.sock") is None  # not made yet: ensure makes it 0700
    mine.mkdir(mode=0o700)
    assert socket_problem(mine / "agent.sock") is None
    mine.chmod(0o711)  # as systemd makes /run/rock-agent: others pass, but cannot write
    assert socket_problem(mine / "agent.sock") is None
    # Any user's socket may sit in root's folder; /tmp is shared but sticky.
    fresh = Path(f"/tmp/rock-agent-test-{secrets.token_hex(4)}/agent.sock")
    assert socket_problem(fresh, uid=1000) is None
    assert socket_problem(Path("/tmp/agent.sock"), uid=1000) == (
        "the socket folder /tmp may be written by other users (mode 1777): make it 0700, or "
        "choose another --socket"
    )
