"""Port forwarding into real sandboxes (network mode "none"): HTTP, concurrency, big transfers,
half-close, errors, and `rock port` on a sandbox another program owns.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from rock_agent import _netns
from rock_core import (
    BadRequest,
    Cluster,
    HostUnavailable,
    NotFound,
    RockError,
    SandboxNotFound,
)
from rock_core._ports import open_port_forward
from rock_sdk import Sandbox, SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_cli import rock
from .test_leases import FAST, SocketAgent, wait_for
from .test_leases import agent as agent  # the fixture: a socket agent this test can kill

pytestmark = pytest.mark.anyio

BIG = 20_000_000
FILES = 8

# Reads everything until the client half-closes, then answers with its size and digest.
DIGEST_SERVER = """
import hashlib, socket
server = socket.create_server(("127.0.0.1", 9000))
while True:
    conn, _ = server.accept()
    digest, size = hashlib.sha256(), 0
    while chunk := conn.recv(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    conn.sendall(f"{size} {digest.hexdigest()}".encode())
    conn.close()
"""


async def wait_listening(sb: Sandbox, port: int) -> None:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)"
    with anyio.fail_after(30):
        while (await sb.execute(["python3", "-c", probe])).exit_code != 0:  # noqa: ASYNC110
            await anyio.sleep(0.1)


@pytest.fixture(scope="module")
async def web(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """A python sandbox (no network) serving /srv over HTTP on 8000, a digest server on 9000."""
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, memory="512m", cpus=1), cluster=cluster)
    await sb.start()
    try:
        await sb.write_file("/srv/digest_server.py", DIGEST_SERVER)
        setup = [
            f"head -c {BIG} /dev/urandom > /srv/big.bin",
            *(f"echo file number {i} > /srv/f{i}.txt" for i in range(FILES)),
            "cd /srv && (python3 -m http.server 8000 > /tmp/http.log 2>&1 &)",
            "(python3 /srv/digest_server.py > /tmp/digest.log 2>&1 &)",
        ]
        await sb.arun(" && ".join(setup), check=True, timeout=60)
        await wait_listening(sb, 8000)
        await wait_listening(sb, 9000)
        yield sb
    finally:
        await sb.delete()


def http_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.read()


async def get(url: str) -> tuple[int, bytes]:
    return await anyio.to_thread.run_sync(http_get, url)


async def test_sandbox_has_no_network_but_its_port_serves_http(web: Sandbox) -> None:
    info = await web.status()
    assert info.info is not None
    out = await anyio.run_process(
        ["docker", "inspect", "--format", "{{.HostConfig.NetworkMode}}", info.info.container_id]
    )
    assert out.stdout.decode().strip() == "none"
    async with web.expose_port(8000) as (host, port):
        assert host == "127.0.0.1" and port > 0
        status, body = await get(f"http://{host}:{port}/f3.txt")
    assert (status, body) == (200, b"file number 3\n")


async def test_several_concurrent_connections(web: Sandbox) -> None:
    bodies: dict[int, bytes] = {}
    async with web.expose_port(8000) as forward:

        async def fetch(i: int) -> None:
            status, body = await get(f"{forward.url}/f{i}.txt")
            assert status == 200
            bodies[i] = body

        async with anyio.create_task_group() as tg:
            for i in range(FILES):
                tg.start_soon(fetch, i)
        assert forward.connections == FILES
        assert forward.errors == []
    assert bodies == {i: f"file number {i}\n".encode() for i in range(FILES)}


async def test_a_20_mb_response_arrives_intact(web: Sandbox) -> None:
    expected = (await web.execute(["sha256sum", "/srv/big.bin"], check=True)).stdout.split()[0]
    async with web.expose_port(8000) as forward:
        status, body = await get(f"{forward.url}/big.bin")
        assert forward.bytes_out > BIG
    assert status == 200
    assert len(body) == BIG
    assert hashlib.sha256(body).hexdigest() == expected


def send_and_half_close(host: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=60) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(1 << 16):
            answer += chunk
    return answer


async def test_upload_direction_and_half_close(web: Sandbox) -> None:
    payload = os.urandom(8 << 20)
    async with web.expose_port(9000) as (host, port):
        answer = await anyio.to_thread.run_sync(send_and_half_close, host, port, payload)
        empty = await anyio.to_thread.run_sync(send_and_half_close, host, port, b"")
    assert answer.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
    assert empty.decode() == f"0 {hashlib.sha256(b'').hexdigest()}"


def connect_and_read(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return conn.recv(100)


async def test_nothing_listening_resets_the_client_and_reports_why(web: Sandbox) -> None:
    seen: list[RockError] = []
    reported = anyio.Event()

    def report(error: RockError) -> None:
        seen.append(error)
        reported.set()

    async with web.expose_port(8999, on_error=report) as (host, port):
        with pytest.raises(ConnectionResetError):
            await anyio.to_thread.run_sync(connect_and_read, host, port)
        with anyio.fail_after(10):
            await reported.wait()
    (error,) = seen
    assert isinstance(error, NotFound)
    assert str(error) == (
        f"nothing listens on 127.0.0.1:8999 in sandbox {web.sandbox_id} (connection refused)"
    )


async def test_forward_errors(cluster: Cluster, web: Sandbox) -> None:
    with pytest.raises(BadRequest, match=r"^port must be between 1 and 65535, got 0$"):
        async with web.expose_port(0):
            pass
    conn = cluster.connection(web.sandbox_id)
    with pytest.raises(SandboxNotFound, match="sb-no-such-sandbox"):
        async with open_port_forward(conn, "sb-no-such-sandbox", 80):
            pass
    with pytest.raises(BadRequest, match=r"^address 'not-an-ip' is not an IP address$"):
        async with web.expose_port(8000, address="not-an-ip"):
            pass


async def test_forward_to_a_stopped_sandbox_is_refused(cluster: Cluster) -> None:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster)
    await sb.start()
    try:
        await sb.stop()
        with pytest.raises(BadRequest, match=r"is exited, not running: cannot forward port 80$"):
            async with sb.expose_port(80):
                pass
    finally:
        await sb.delete()


async def test_forward_into_a_bridge_network_sandbox(cluster: Cluster) -> None:
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, memory="256m", network=True), cluster=cluster)
    await sb.start()
    try:
        await sb.write_file("/srv/index.txt", "bridged\n")
        await sb.arun("cd /srv && (python3 -m http.server 8000 > /dev/null 2>&1 &)", check=True)
        await wait_listening(sb, 8000)
        async with sb.expose_port(8000) as forward:
            assert await get(f"{forward.url}/index.txt") == (200, b"bridged\n")
    finally:
        await sb.delete()


async def docker_labels(sb: Sandbox) -> dict[str, str]:
    status = await sb.status()
    assert status.info is not None
    out = await anyio.run_process(
        ["docker", "inspect", "--format", "{{json .Config.Labels}}", status.info.container_id]
    )
    labels: dict[str, str] = json.loads(out.stdout)
    return labels


async def test_rock_port_forwards_a_sandbox_it_does_not_own_and_leaves_it_alone(
    web: Sandbox,
) -> None:
    labels = await docker_labels(web)
    # A short lease: were the CLI's agent to treat this test's sandbox as its own to reap,
    # it would do so within the wait below.
    env = {**os.environ, "ROCK_AGENT_LEASE": "5"}
    command = [sys.executable, "-m", "rock_sdk._cli", "port", web.sandbox_id, "8000"]
    async with await anyio.open_process(command, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        with anyio.fail_after(60):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        words = line.decode().split()
        assert words[0] == "forwarding" and words[2:6] == ["->", "sandbox", web.sandbox_id, "port"]
        url = f"http://{words[1]}"
        assert await get(f"{url}/f1.txt") == (200, b"file number 1\n")
        await anyio.sleep(8)
        assert await get(f"{url}/f2.txt") == (200, b"file number 2\n")
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            assert await process.wait() == 130  # Ctrl-C: interrupted
        errors = b""
        async for chunk in process.stderr:
            errors += chunk
    assert b"forwarded 2 connections" in errors
    assert (await web.status()).info is not None
    assert await docker_labels(web) == labels  # same owner, nothing changed
    assert await get_through_new_forward(web) == b"file number 0\n"


async def get_through_new_forward(sb: Sandbox) -> bytes:
    async with sb.expose_port(8000) as forward:
        return (await get(f"{forward.url}/f0.txt"))[1]


async def test_rock_port_of_an_unknown_sandbox(docker_engine: None) -> None:
    r = await anyio.to_thread.run_sync(lambda: rock("port", "sb-no-such-sandbox", "80"))
    assert r.returncode == 125
    assert "rock port: no sandbox 'sb-no-such-sandbox' on any host" in r.stderr


async def test_a_forward_outlives_an_agent_restart(agent: SocketAgent) -> None:
    seen: list[RockError] = []
    async with open_sdk_cluster([agent.address], lease=30, **FAST) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=PY_IMAGE, memory="256m"))
        await sb.write_file("/srv/page.txt", "served\n")
        await sb.arun("cd /srv && (python3 -m http.server 8000 > /dev/null 2>&1 &)", check=True)
        await wait_listening(sb, 8000)
        host = cluster.core.hosts[agent.host_id]
        async with sb.expose_port(8000, on_error=seen.append) as forward:
            assert await get(f"{forward.url}/page.txt") == (200, b"served\n")
            await wait_for(lambda: not forward.active, 10, "first connection ended")

            agent.kill()
            await wait_for(lambda: host.state != "connected", 10, "link loss noticed")
            with pytest.raises(ConnectionResetError):
                await anyio.to_thread.run_sync(connect_and_read, *forward)
            await wait_for(lambda: not forward.active, 10, "failed connection ended")
            (error,) = seen
            assert isinstance(error, HostUnavailable)
            assert str(error).startswith(
                f"host {agent.host_id} is reconnecting: its link has been down for "
            )

            assert agent.ensure()["started"] is True
            await wait_for(lambda: host.state == "connected", 30, "reconnected")
            # The same forward, on the cluster's new link to the restarted agent.
            assert await get(f"{forward.url}/page.txt") == (200, b"served\n")
            assert await get(f"{forward.url}/page.txt") == (200, b"served\n")
        assert (forward.connections, forward.errors) == (4, [error])


@pytest.fixture
def full_listener() -> Iterator[socket.socket]:
    """A listener whose accept queue is full: a connect to it hangs until room is made."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname(), timeout=5):
            yield listener


async def test_slow_connects_neither_hold_the_default_thread_pool_nor_delay_a_cancel(
    full_listener: socket.socket,
) -> None:
    # The agent connects from inside a network namespace; this process's own will do here.
    port = full_listener.getsockname()[1]
    default_pool = anyio.to_thread.current_default_thread_limiter()
    count = int(default_pool.total_tokens) + 5
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(_netns.connect_inside, "sb-test", os.getpid(), "127.0.0.1", port)
        await anyio.sleep(0.5)
        assert default_pool.borrowed_tokens == 0
        with anyio.fail_after(5):
            assert await anyio.to_thread.run_sync(lambda: "still served") == "still served"
        started = time.monotonic()
        tg.cancel_scope.cancel()
    assert time.monotonic() - started < 2, "a cancelled request waited for its connect"


def accept_one(listener: socket.socket, timeout: float) -> socket.socket:
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    conn.settimeout(timeout)
    return conn


async def test_a_cancelled_connect_closes_its_socket_when_it_connects(
    full_listener: socket.socket,
) -> None:
    host, port = full_listener.getsockname()
    with anyio.move_on_after(0.3) as scope:
        await _netns.connect_inside("sb-test", os.getpid(), host, port)
    assert scope.cancelled_caught
    # Room for the abandoned connect: the queued connection goes, the retried SYN gets in.
    accept_one(full_listener, 5).close()
    conn = await anyio.to_thread.run_sync(accept_one, full_listener, 10)
    with conn:
        assert await anyio.to_thread.run_sync(conn.recv, 1) == b""  # closed at once, not leaked
