"""Faults, ten times each, with the containers counted: nothing leaks, callers get typed errors.

- kill -9 of the program: its local (stdio) agent reaps its sandboxes; a socket agent reaps
  them when the program's short lease ends.
- kill -9 of a socket agent mid-create, mid-upload and mid-command, then a restart: the call
  fails with a `RockError` (never a foreign exception or a bare group), the core reconnects and
  reconciles, and when the program ends nothing of it is left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import Cluster, RockError, SandboxState
from rock_sdk import Sandbox, SandboxConfig, open_cluster

from ..conftest import SH_IMAGE, labelled_containers
from ._agents import SocketAgent, engine_containers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TIMES = 10
FAST: dict[str, Any] = {"heartbeat": 0.3, "heartbeat_timeout": 1.0, "grace": 60.0}
GONE_WITHIN = 60.0  # a hang detector, not a timing claim


def wait_until(condition: Callable[[], bool], what: str, seconds: float = GONE_WITHIN) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.1)


PROGRAM = textwrap.dedent(
    """
    import sys, anyio
    from rock_sdk import SandboxConfig, open_cluster
    async def main():
        hosts = [sys.argv[1]]
        fast = {"lease": 2.0, "heartbeat": 0.3, "heartbeat_timeout": 1.0}
        extra = fast if hosts[0] != "local" else {}
        async with open_cluster(hosts, **extra) as cluster:
            sb = await cluster.create_sandbox(SandboxConfig(image=sys.argv[2], memory="64m"))
            await sb.arun("sleep 600 &")
            print(sb.sandbox_id, flush=True)
            await anyio.sleep(600)
    anyio.run(main)
    """
)


def run_and_kill_program(host: str) -> str:
    """Start a program that holds one sandbox on `host`, kill -9 it; return the sandbox id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, host, SH_IMAGE], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    sandbox_id = proc.stdout.readline().strip()
    assert sandbox_id.startswith("sb-"), sandbox_id
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return sandbox_id


def containers_of(sandbox_id: str) -> list[str]:
    return labelled_containers(f"rock.sandbox={sandbox_id}")


def test_kill_9_of_a_program_with_a_local_agent(docker_engine: None) -> None:
    for _ in range(TIMES):
        sandbox_id = run_and_kill_program("local")
        wait_until(lambda: not containers_of(sandbox_id), f"{sandbox_id} reaped")  # noqa: B023


def test_kill_9_of_a_program_with_a_socket_agent_and_a_short_lease(
    docker_engine: None, tmp_path: Path
) -> None:
    agent = SocketAgent(tmp_path, lease=2.0, reap_interval=1.0).start()
    try:
        for _ in range(TIMES):
            sandbox_id = run_and_kill_program(agent.address)
            wait_until(lambda: not containers_of(sandbox_id), f"{sandbox_id} reaped")  # noqa: B023
    finally:
        agent.stop()
        leaked = agent.containers()
        agent.remove_containers()
    assert not leaked


async def reconnected(cluster: Cluster, host_id: str) -> None:
    """Wait until the core has its link to `host_id` back (it offers no event to wait on)."""
    with anyio.fail_after(GONE_WITHIN):
        while cluster.hosts[host_id].state != "connected":  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def _survive_agent_kill(
    tmp_path: Path, work: Callable[[Sandbox], Awaitable[object]], mid: tuple[float, float]
) -> None:
    """Run `work` on a sandbox, kill -9 its agent after a delay drawn from `mid`, restart it,
    and end the program: every time, the call ends typed and nothing is left."""
    agent = await anyio.to_thread.run_sync(SocketAgent(tmp_path, lease=30.0).start)
    outcomes: dict[str, int] = {}
    try:
        async with open_cluster([agent.address], **FAST) as cluster:
            for _ in range(TIMES):
                sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))

                async def kill_soon() -> None:
                    await anyio.sleep(random.uniform(*mid))
                    await anyio.to_thread.run_sync(agent.kill)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(kill_soon)
                    try:
                        with anyio.fail_after(GONE_WITHIN):
                            await work(sb)
                        outcomes["finished"] = outcomes.get("finished", 0) + 1
                    except RockError as exc:
                        outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                await anyio.to_thread.run_sync(agent.start)
                await reconnected(cluster.core, agent.host_id)
                # The sandbox is still there, and usable, or clearly failed: delete it.
                assert sb.state in (SandboxState.RUNNING, SandboxState.FAILED), sb.state
                await sb.delete()
        await anyio.to_thread.run_sync(
            wait_until, lambda: not agent.containers(), "every container of the program removed"
        )
    finally:
        await anyio.to_thread.run_sync(agent.stop)
        leaked = await anyio.to_thread.run_sync(engine_containers, agent.host_id)
        await anyio.to_thread.run_sync(agent.remove_containers)
    assert not leaked
    assert sum(outcomes.values()) == TIMES, outcomes
    assert set(outcomes) - {"finished"}, f"the agent was never killed mid-call: {outcomes}"


async def test_kill_9_of_the_agent_mid_command(docker_engine: None, tmp_path: Path) -> None:
    async def command(sb: Sandbox) -> object:
        return await sb.arun("sleep 2; echo done", timeout=30)

    await _survive_agent_kill(tmp_path, command, (0.1, 1.0))


async def test_kill_9_of_the_agent_mid_upload(docker_engine: None, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.touch()
    os.truncate(big, 64 << 20)

    async def upload(sb: Sandbox) -> object:
        return await sb.upload(big, "/tmp/big.bin")

    await _survive_agent_kill(tmp_path, upload, (0.05, 0.4))


async def test_kill_9_of_the_agent_mid_create(docker_engine: None, tmp_path: Path) -> None:
    agent = await anyio.to_thread.run_sync(SocketAgent(tmp_path, lease=30.0).start)
    outcomes: dict[str, int] = {}
    try:
        async with open_cluster([agent.address], **FAST) as cluster:
            for _ in range(TIMES):
                async with anyio.create_task_group() as tg:

                    async def kill_soon() -> None:
                        await anyio.sleep(random.uniform(0.0, 0.3))
                        await anyio.to_thread.run_sync(agent.kill)

                    tg.start_soon(kill_soon)
                    try:
                        with anyio.fail_after(GONE_WITHIN):
                            # Small: the created ones stay, and must not fill a 2-cpu host.
                            await cluster.create_sandbox(
                                SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.1)
                            )
                        outcomes["created"] = outcomes.get("created", 0) + 1
                    except RockError as exc:
                        outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                await anyio.to_thread.run_sync(agent.start)
                await reconnected(cluster.core, agent.host_id)
        # The program ended: its own sandboxes and any half-made one are gone.
        await anyio.to_thread.run_sync(
            wait_until, lambda: not agent.containers(), "every container of the program removed"
        )
    finally:
        await anyio.to_thread.run_sync(agent.stop)
        leaked = await anyio.to_thread.run_sync(engine_containers, agent.host_id)
        await anyio.to_thread.run_sync(agent.remove_containers)
    assert not leaked, leaked
    assert sum(outcomes.values()) == TIMES, outcomes
