"""`rock events` and the end in `rock status`: what a socket agent remembers of sandbox ends.

The agent is a socket agent (as a cluster host runs one); a program holds a sandbox on it
through its own connection, and the command line (another process's view) stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from rock_core._hosts import open_host
from rock_core.protocol import CreateSandbox, SandboxReply, SandboxSpec

from ..conftest import SH_IMAGE
from .test_cli import cli
from .test_leases import SocketAgent, create_and_vanish, running_agent, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def agent(
    tmp_path: Path, docker_engine: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SocketAgent]:
    monkeypatch.delenv("ROCK_HOSTS", raising=False)
    monkeypatch.delenv("ROCK_CONFIG", raising=False)
    with running_agent(tmp_path, "events") as agent:
        yield agent


async def rock(*args: str) -> tuple[int, bytes, bytes]:
    """`cli` off the event loop (it runs one of its own)."""
    return await anyio.to_thread.run_sync(lambda: cli(*args))


async def test_a_stop_by_the_command_line_is_an_end_of_the_user(agent: SocketAgent) -> None:
    sandbox_id = "sb-" + secrets.token_hex(4)
    async with open_host(agent.address, owner="events-owner", lease=120) as conn:
        spec = SandboxSpec(image=SH_IMAGE, memory=32 << 20)
        request = CreateSandbox(id=conn.next_id(), sandbox_id=sandbox_id, spec=spec)
        await conn.call(request, SandboxReply)
        try:
            await stopped_by_the_cli(agent, sandbox_id)
        finally:
            await rock("--hosts", agent.address, "rm", sandbox_id)


async def stopped_by_the_cli(agent: SocketAgent, sandbox_id: str) -> None:
    at = ("--hosts", agent.address)
    assert await rock(*at, "stop", "--timeout", "1", sandbox_id) == (
        0,
        f"{sandbox_id}\n".encode(),
        b"",
    )
    code, out, err = await rock(*at, "events", "--json")
    assert (code, err) == (0, b"")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    ours = [row for row in rows if row["sandbox"] == sandbox_id]
    assert [(r["state"], r["end"], r["owner"], r["host"]) for r in ours] == [
        ("stopped", "user", "events-owner", agent.host_id)
    ]
    assert ours[0]["exit_code"] is not None and ours[0]["at"] > 0
    code, out, _ = await rock(*at, "events")
    table = out.decode().splitlines()
    assert code == 0 and table[0].split() == [
        "TIME",
        "HOST",
        "SANDBOX",
        "STATE",
        "END",
        "EXIT",
        "REASON",
    ]
    assert any(sandbox_id in line and " user " in line for line in table[1:])
    code, out, _ = await rock(*at, "status", sandbox_id)
    ended = [line for line in out.decode().splitlines() if line.startswith("ended")]
    assert code == 0 and len(ended) == 1 and ended[0].split()[1] == "user", out
    code, out, _ = await rock(*at, "status", "--json", sandbox_id)
    assert code == 0 and json.loads(out)["end"]["end"] == "user"


def test_an_unknown_host_fails_events_naming_it(agent: SocketAgent) -> None:
    code, out, err = cli("--hosts", agent.address, "events", "--host", "nope")
    assert (code, out) == (125, b"")
    assert err.decode() == (
        f"rock events: no host 'nope' in this cluster (hosts: {agent.host_id})\n"
    )


@pytest.mark.slow
async def test_a_lease_that_expires_is_logged_as_such(agent: SocketAgent) -> None:
    sandbox_id = await create_and_vanish(agent, "remote:events-gone")
    await wait_for(lambda: not agent.containers(), 30, "reaped after the lease")
    code, out, err = await rock("--hosts", agent.address, "events", "--json")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert (code, err) == (0, b"")
    # Its container stopped on the way out, then went: both steps say why.
    assert [(r["sandbox"], r["state"], r["end"], r["owner"]) for r in rows] == [
        (sandbox_id, "stopped", "lease_expired", "remote:events-gone"),
        (sandbox_id, "deleted", "lease_expired", "remote:events-gone"),
    ]
    assert rows[-1]["reason"] == "removed: its owner's lease expired"


@pytest.mark.slow
async def test_follow_prints_new_ends_until_ctrl_c(agent: SocketAgent) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "rock_sdk._cli", "--hosts", agent.address]
    follow = await anyio.open_process([*argv, "events", "--follow", "--json"], env=env)
    assert follow.stdout is not None
    try:
        sandbox_id = await create_and_vanish(agent, "remote:followed")  # reaped at its lease
        out = b""
        with anyio.fail_after(60):
            while not out.endswith(b"\n"):
                out += await follow.stdout.receive()
        row = json.loads(out.splitlines()[0])
        assert (row["sandbox"], row["end"]) == (sandbox_id, "lease_expired")
    finally:
        follow.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            code = await follow.wait()
        await follow.aclose()
    assert code == 130
