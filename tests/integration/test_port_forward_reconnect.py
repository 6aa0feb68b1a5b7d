"""A port forward across a broken and re-made agent link, on asyncio and trio (its local
side is real TCP).

The forward looks its link up per accepted connection (as `Sandbox.expose_port` does with
``cluster.connection``); here the lookup is a real `Host` of the cluster, whose connection the
test replaces the way the cluster's reconnect does, with a scripted agent on each link.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_core import AgentConnection, HostUnavailable, RockError, open_agent_connection
from rock_core._cluster import Host
from rock_core._ports import PortForward, open_port_forward
from rock_core.testing import memory_stream_pair

from ._echo_agent import EchoAgent, send_all_and_read

pytestmark = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


@asynccontextmanager
async def agent_link(agent: EchoAgent) -> AsyncIterator[tuple[AgentConnection, anyio.Event]]:
    """A connection to `agent`; setting the yielded event breaks the link (the agent dies)."""
    client, server = memory_stream_pair()
    die = anyio.Event()

    async def run_agent() -> None:
        async with anyio.create_task_group() as inner:
            inner.start_soon(agent.serve, server)
            await die.wait()
            inner.cancel_scope.cancel()
        await server.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_agent)
        async with open_agent_connection(client, owner="me", name="echo") as conn:
            yield conn, die
        die.set()


async def echo(forward: PortForward, payload: bytes) -> bytes:
    async with await anyio.connect_tcp(*forward) as local:
        return await send_all_and_read(local, payload)


async def settled(forward: PortForward) -> None:
    with anyio.fail_after(5):
        while forward.active:  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_forward_follows_the_hosts_link_across_a_reconnect() -> None:
    seen: list[RockError] = []
    async with agent_link(EchoAgent()) as (first, kill_first):
        host = Host("h1", "memory", first)
        async with open_port_forward(host.link, "sb-1", 80, on_error=seen.append) as forward:
            assert await echo(forward, b"before") == b"BEFORE"

            # The agent dies; the cluster marks the host down and starts reconnecting.
            kill_first.set()
            with anyio.fail_after(5):
                while not first.closed:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            host.state, host.last_error = "reconnecting", "the agent closed the link"

            async with await anyio.connect_tcp(*forward) as local:
                with pytest.raises(anyio.BrokenResourceError):  # reset, not a clean end
                    await local.receive()
            await settled(forward)
            (error,) = seen
            assert isinstance(error, HostUnavailable)
            assert str(error) == (
                "host h1 is reconnecting: its link has been down "
                "(last error: the agent closed the link)"
            )
            assert forward.errors == [error]

            # The cluster reconnects: a new AgentConnection, and the same forward uses it.
            async with agent_link(EchoAgent()) as (second, _):
                host.connection, host.state = second, "connected"
                assert await echo(forward, b"after") == b"AFTER"
                assert await echo(forward, b"again") == b"AGAIN"
                await settled(forward)
        assert (forward.connections, forward.errors) == (4, [error])
        assert (forward.bytes_in, forward.bytes_out) == (16, 16)


@pytest.mark.anyio
async def test_a_forward_cannot_open_while_the_host_is_down() -> None:
    host = Host("h2", "memory", None)
    host.state = "reconnecting"
    with pytest.raises(HostUnavailable, match=r"^host h2 is reconnecting: its link has been down$"):
        async with open_port_forward(host.link, "sb-1", 80):
            pass
