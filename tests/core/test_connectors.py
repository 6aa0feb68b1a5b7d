"""Hosts given as connectors: a connector is the caller's code, and its failures are ours to
type (`TransportError` naming the host), never a crash of the cluster; the settings of a
connector the caller built are its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest

from rock_core import (
    AddressConnector,
    ByteStream,
    ClusterOptions,
    LinkState,
    SandboxSpec,
    SshOptions,
    TransportError,
    open_cluster,
)
from rock_core.serving import Connection
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

LINK = ClusterOptions(owner="me", lease=60, grace=30, heartbeat=5, heartbeat_timeout=10)


class LeasedAgent(FakeAgent):
    """Keeps an owner's sandboxes when its link ends (a socket agent's lease)."""

    async def closed(self, conn: Connection) -> None:
        pass


class Flaky:
    """A connector whose `connect` raises a foreign error (as a user's socket code would)
    while `failing`."""

    def __init__(self, agent: FakeAgent) -> None:
        self.inner = FakeAgentConnector(agent)
        self.failing = False
        self.connects = 0

    @property
    def name(self) -> str:
        return "flaky://host"

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        self.connects += 1
        if self.failing:
            raise ConnectionRefusedError(111, "Connection refused")
        return self.inner.connect()


async def test_a_foreign_error_at_the_first_connect_is_a_transport_error_naming_the_host() -> None:
    flaky = Flaky(FakeAgent())
    flaky.failing = True
    with pytest.raises(TransportError, match=r"^connecting to flaky://host: ConnectionRefused"):
        async with open_cluster([flaky], LINK):
            pass


async def test_a_foreign_error_at_a_reconnect_is_a_link_failure_retried_not_a_crash() -> None:
    agent = LeasedAgent()
    flaky = Flaky(agent)
    async with open_cluster([flaky], LINK) as cluster:
        record = await cluster.create_sandbox(SandboxSpec(image="img:1", cpus=1, memory=1 << 30))
        flaky.failing = True
        await agent.disconnect()
        await anyio.sleep(5)  # several reconnects fail, each with the foreign error
        host = cluster.hosts[agent.host_id]
        assert host.state == LinkState.RECONNECTING
        assert flaky.connects >= 3
        flaky.failing = False
        await anyio.sleep(20)  # within the grace period: the link comes back
        assert host.state == LinkState.CONNECTED
        assert cluster.record(record.sandbox_id).state.value == "running"


class BadClose(Flaky):
    """A connector whose stream's closing raises a foreign error (a reset socket's close)."""

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        return self._connect()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[ByteStream]:
        self.connects += 1
        async with self.inner.connect() as stream:
            yield stream
        raise ConnectionResetError(104, "Connection reset by peer")


async def test_a_foreign_error_closing_a_link_is_a_link_failure_retried_not_a_crash() -> None:
    agent = LeasedAgent()
    connector = BadClose(agent)
    async with open_cluster([connector], LINK) as cluster:
        await agent.disconnect()  # the link ends; closing its stream raises
        await anyio.sleep(5)
        assert cluster.hosts[agent.host_id].state == LinkState.CONNECTED
        assert connector.connects >= 2


async def test_a_given_address_connector_keeps_its_own_ssh_options() -> None:
    mine = SshOptions(connect_timeout=3)
    connector = AddressConnector("unix:///nonexistent/agent.sock", ssh=mine)
    with pytest.raises(TransportError):
        async with open_cluster([connector], LINK, ssh=SshOptions(connect_timeout=9)):
            pass
    assert connector.ssh is mine
