"""The engine boundary with no engine at all: nothing at `DOCKER_HOST`, a stale socket, a
socket this user may not use, a TCP engine that refuses; each is `EngineUnavailable` saying
where it looked, why and what to do, from the SDK, the `rock` command line and a socket agent
that keeps serving meanwhile. Only our errors leave the engine's error mapping.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from rock_agent._docker import DockerRuntime
from rock_agent._engine import engine_errors, engine_unavailable, open_docker
from rock_core import open_cluster
from rock_core._errors import EngineUnavailable, FileNotFound, TransportError

from ._engine_edges import HOST, log_records, wait_for_socket

pytestmark = pytest.mark.anyio

ENOENT_FIX = "no socket there: is dockerd running? (set DOCKER_HOST if it listens elsewhere)"


def rock(*args: str, env: dict[str, str], prefix: list[str] | None = None) -> Any:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "rock_sdk._cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture
def missing_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST names a socket that does not exist (for agents this test starts)."""
    url = f"unix://{tmp_path / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", url)
    return url


@pytest.fixture
def stale_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST names a socket file no one listens on (dockerd died and left it)."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    return f"unix://{path}"


async def test_a_local_agent_without_an_engine_refuses_the_handshake_saying_why(
    missing_engine: str,
) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        async with open_cluster(["local"]):
            pass
    assert str(caught.value) == f"no Docker engine answers at {missing_engine}: {ENOENT_FIX}"


async def test_a_stale_engine_socket_is_a_refused_connection(stale_engine: str) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        async with open_cluster(["local"]):
            pass
    assert str(caught.value) == (
        f"no Docker engine answers at {stale_engine}: connection refused: is dockerd running?"
    )


def test_rock_says_one_line_and_exits_125_without_an_engine(missing_engine: str) -> None:
    done = rock("ps", env={"DOCKER_HOST": missing_engine})
    assert (done.returncode, done.stdout) == (125, "")
    assert done.stderr == f"rock ps: no Docker engine answers at {missing_engine}: {ENOENT_FIX}\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv, to take away root's right to any socket",
)
def test_rock_names_a_socket_it_may_not_use(tmp_path: Path) -> None:
    # An engine socket of another user, mode 0600; `rock` runs as root without
    # CAP_DAC_OVERRIDE, so the socket's mode applies to it as to any user outside the group.
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o600)
        caps = "-dac_override,-dac_read_search"
        without = ["setpriv", "--bounding-set", caps, "--inh-caps", caps]
        done = rock("ps", env={"DOCKER_HOST": f"unix://{path}"}, prefix=without)
    assert (done.returncode, done.stdout) == (125, "")
    assert done.stderr == (
        f"rock ps: no Docker engine answers at unix://{path}: permission denied: "
        "is this user in the docker group (or root)?\n"
    )


def test_the_message_names_each_cause_and_its_fix() -> None:
    def said(code: int) -> str:
        return str(engine_unavailable("tcp://e:2375", OSError(code, os.strerror(code))))

    assert said(errno.EACCES) == (
        "no Docker engine answers at tcp://e:2375: permission denied: "
        "is this user in the docker group (or root)?"
    )
    assert said(errno.EPERM) == said(errno.EACCES)
    assert said(errno.ENOENT) == f"no Docker engine answers at tcp://e:2375: {ENOENT_FIX}"
    assert said(errno.ECONNREFUSED) == (
        "no Docker engine answers at tcp://e:2375: connection refused: is dockerd running?"
    )
    assert said(errno.EHOSTUNREACH) == (
        "no Docker engine answers at tcp://e:2375: No route to host: is dockerd running? "
        "is this user in the docker group?"
    )


async def test_a_tcp_engine_that_refuses_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nothing listens on it
    async with open_docker(f"tcp://127.0.0.1:{port}") as docker:
        with pytest.raises(EngineUnavailable) as caught:
            await DockerRuntime(docker, HOST).inspect("sb-1")
    assert str(caught.value) == (
        f"no Docker engine answers at tcp://127.0.0.1:{port}: connection refused: "
        "is dockerd running?"
    )


def test_only_our_errors_leave_the_mapping() -> None:
    for foreign in (ConnectionResetError(errno.ECONNRESET, "reset"), aiohttp.ClientPayloadError()):
        with pytest.raises(TransportError) as caught, engine_errors("reading"):
            raise foreign
        assert type(caught.value) is TransportError
    with pytest.raises(FileNotFound), engine_errors("reading"):
        raise FileNotFound("ours pass through")  # an OSError too, but ours


async def test_a_socket_agent_without_an_engine_keeps_serving_and_says_so_once(
    missing_engine: str, tmp_path: Path
) -> None:
    path = tmp_path / "agent.sock"
    host = f"edge-{secrets.token_hex(3)}"
    command = [sys.executable, "-m", "rock_agent", "serve", "--socket", str(path)]
    async with await anyio.open_process(
        [*command, "--host-id", host, "--reap-interval", "0.2"], stderr=subprocess.STDOUT
    ) as agent:
        try:
            for _ in range(2):
                await wait_for_socket(path)
                with pytest.raises(EngineUnavailable, match=r"^no Docker engine answers at "):
                    async with open_cluster([f"unix://{path}"]):
                        pass
            assert agent.returncode is None  # still serving
        finally:
            agent.terminate()
            await agent.wait()
        records = await log_records(agent)
    said = [r["event"] for r in records if r["level"] not in ("debug", "info")]
    assert said == [
        f"no Docker engine answers at {missing_engine}: {ENOENT_FIX} "
        "(clients are refused until it answers)"
    ]
