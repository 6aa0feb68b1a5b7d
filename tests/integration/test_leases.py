"""Leases, adoption and agent restarts against a real socket agent and real Docker.

The agent runs as it does on a cluster host (started by `rock-agent ensure`, in its own
session) with a short lease, under a host id of its own so it manages only this module's
containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import (
    SandboxLost,
    SandboxSpec,
    SandboxState,
    SessionNotFound,
    open_cluster,
)
from rock_core._hosts import open_host
from rock_core._protocol import CreateSandbox, SandboxReply
from rock_sdk import Sandbox, SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import SH_IMAGE

LEASE = 2.0
FAST: dict[str, Any] = {"heartbeat": 0.3, "heartbeat_timeout": 1.0}

pytestmark = pytest.mark.anyio

both_backends = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


class SocketAgent:
    """A socket agent started the way `ensure` starts one over SSH."""

    def __init__(self, socket: Path, host_id: str) -> None:
        self.socket = socket
        self.host_id = host_id
        self.address = f"unix://{socket}"

    def ensure(self) -> dict[str, object]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "rock_agent",
                "ensure",
                "--socket",
                str(self.socket),
                "--host-id",
                self.host_id,
                "--lease",
                str(LEASE),
                "--idle-exit",
                "0",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        reply: dict[str, object] = json.loads(out.stdout)
        return reply

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-f", f"serve --socket {self.socket}"], capture_output=True, text=True
        )
        return [int(pid) for pid in out.stdout.split()]

    def kill(self, signum: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            os.kill(pid, signum)
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def containers(self) -> list[str]:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=rock.host={self.host_id}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()


@contextlib.contextmanager
def running_agent(folder: Path, name: str, *, leaks_fail: bool = True) -> Iterator[SocketAgent]:
    """A socket agent (host id `name-<random>`) for the block; then stopped, and the containers
    it left removed (with `leaks_fail`, the block fails if there were any)."""
    agent = SocketAgent(folder / "agent.sock", f"{name}-{secrets.token_hex(3)}")
    assert agent.ensure()["started"] is True
    yield agent
    agent.kill(signal.SIGTERM)
    leftovers = agent.containers()
    if leftovers:
        subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True)
    assert not (leaks_fail and leftovers), f"containers left behind: {leftovers}"


@pytest.fixture
def agent(tmp_path: Path, docker_engine: None) -> Iterator[SocketAgent]:
    with running_agent(tmp_path, "lease") as agent:
        yield agent


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await anyio.sleep(0.05)
    return time.monotonic() - start


async def create_and_vanish(agent: SocketAgent, owner: str) -> str:
    """Create a sandbox as `owner`, then drop the link without deleting it."""
    sandbox_id = "sb-" + secrets.token_hex(4)
    async with open_host(agent.address, owner=owner) as conn:
        await conn.call(
            CreateSandbox(
                id=conn.next_id(),
                sandbox_id=sandbox_id,
                spec=SandboxSpec(image=SH_IMAGE, memory=64 << 20),
            ),
            SandboxReply,
        )
    return sandbox_id


def test_ensure_twice_starts_one_agent(agent: SocketAgent) -> None:
    again = agent.ensure()
    assert again["started"] is False
    assert again["socket"] == str(agent.socket)
    assert len(agent.pids()) == 1


async def test_a_silent_owners_sandboxes_are_reaped_when_its_lease_ends(
    agent: SocketAgent,
) -> None:
    await create_and_vanish(agent, "remote:gone-owner")
    assert len(agent.containers()) == 1, "kept during the lease"
    waited = await wait_for(lambda: not agent.containers(), 20, "reaped after the lease")
    assert waited >= LEASE * 0.5


async def test_an_owner_back_within_its_lease_adopts_its_sandboxes(agent: SocketAgent) -> None:
    owner = "remote:returning-" + secrets.token_hex(3)
    sandbox_id = await create_and_vanish(agent, owner)
    async with open_sdk_cluster([agent.address], owner=owner, lease=LEASE, **FAST) as cluster:
        record = cluster.core.record(sandbox_id)
        assert record.state is SandboxState.RUNNING
        assert [t.reason for t in record.history][:2] == [
            f"adopted on {agent.host_id}",
            "found running",
        ]
        assert cluster.statistics().hosts[0].used.sandboxes == 1
        sb = cluster.sandbox(sandbox_id)
        assert (await sb.arun("echo adopted")).output == "adopted\n"
    # Adopted sandboxes are the cluster's: it deleted them on exit.
    assert not agent.containers()


@both_backends
async def test_agent_restart_keeps_sandboxes_but_not_sessions(agent: SocketAgent) -> None:
    async with open_sdk_cluster([agent.address], lease=30, **FAST) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        await sb.create_session("named")
        await sb.arun("echo one > /tmp/kept")
        host = cluster.core.hosts[agent.host_id]
        agent.kill()
        await wait_for(lambda: host.state != "connected", 10, "link loss noticed")
        assert agent.ensure()["started"] is True
        await wait_for(lambda: host.state == "connected", 30, "reconnected")
        assert sb.state is SandboxState.RUNNING
        # The default session comes back by itself; a named one says what happened.
        assert (await sb.arun("cat /tmp/kept")).output == "one\n"
        with pytest.raises(SessionNotFound, match="do not survive an agent restart"):
            await sb.arun("true", session="named")


@both_backends
async def test_a_host_away_past_grace_is_lost_then_found(agent: SocketAgent) -> None:
    async with open_cluster([agent.address], lease=30, grace=1.0, **FAST) as cluster:
        sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster)
        await sb.start()
        record = cluster.record(sb.sandbox_id)
        agent.kill()
        await wait_for(lambda: record.state is SandboxState.LOST, 15, "marked lost")
        assert cluster.statistics().hosts == ()
        with pytest.raises(SandboxLost, match=r"is lost: host .* unreachable for more than 1 s"):
            await sb.arun("true")
        agent.ensure()
        await wait_for(lambda: record.state is SandboxState.RUNNING, 30, "found again")
        events = [t.event.value for t in record.history]
        assert events[-2:] == ["lose", "found_running"]
        assert cluster.statistics().hosts[0].used.sandboxes == 1
        assert (await sb.arun("echo back")).output == "back\n"


async def test_a_sandbox_gone_while_its_host_was_away_fails(agent: SocketAgent) -> None:
    async with open_cluster([agent.address], lease=30, grace=1.0, **FAST) as cluster:
        sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster)
        await sb.start()
        record = cluster.record(sb.sandbox_id)
        agent.kill()
        await wait_for(lambda: record.state is SandboxState.LOST, 15, "marked lost")
        await anyio.run_process(["docker", "rm", "-f", *agent.containers()])
        agent.ensure()
        await wait_for(lambda: record.state is SandboxState.FAILED, 30, "reconciled")
        assert "its container is gone" in record.history[-1].reason


async def test_stdio_agents_sandboxes_are_not_lease_reaped(agent: SocketAgent) -> None:
    # A program's private (stdio) agent and a socket agent with the same host id: the socket
    # agent must not reap the program's sandboxes when a lease it never granted "ends".
    env = {**os.environ, "ROCK_AGENT_HOST_ID": agent.host_id}
    async with await anyio.open_process(
        [
            sys.executable,
            "-m",
            "rock_sdk._cli",
            "run",
            "--memory",
            "64m",
            SH_IMAGE,
            "--",
            "sleep",
            "6",
        ],
        env=env,
        stdin=subprocess.DEVNULL,  # `rock run` forwards a stdin that is not a terminal
    ) as proc:
        await wait_for(lambda: len(agent.containers()) == 1, 20, "started")
        await anyio.sleep(LEASE + 2)
        assert len(agent.containers()) == 1
        await proc.wait()
    assert proc.returncode == 0


def test_a_second_agent_never_takes_a_live_agents_socket(agent: SocketAgent) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rock_agent", "serve", "--socket", str(agent.socket)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"an agent already listens on {agent.socket}" in result.stderr
    assert agent.ensure()["started"] is False  # the first one still answers


async def test_a_silent_connection_is_closed_and_its_lease_ends(agent: SocketAgent) -> None:
    # A client that vanished without closing its connection (power loss, partition) must
    # not hold its lease forever: a raw connection sends no heartbeats.
    sandbox_id = "sb-" + secrets.token_hex(4)
    async with open_host(agent.address, owner="remote:vanished") as conn:
        await conn.call(
            CreateSandbox(
                id=conn.next_id(),
                sandbox_id=sandbox_id,
                spec=SandboxSpec(image=SH_IMAGE, memory=64 << 20),
            ),
            SandboxReply,
        )
        with anyio.fail_after(20):
            await conn.wait_closed()  # the agent closed it after a lease of silence
    await wait_for(lambda: not agent.containers(), 20, "reaped after the lease")
