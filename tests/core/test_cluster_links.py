"""The cluster's links in virtual time: hosts given as `Connector`s, heartbeats, reconnects with
backoff, grace, and `ClusterOptions`.

The agents are `FakeAgent`s reached through connectors that a test can make refuse; the clock
is trio's `MockClock`, so a 30 s grace period passes in no real time and times are exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest

from rock_core import (
    AlreadyExists,
    BadRequest,
    ByteStream,
    Cluster,
    SandboxSpec,
    SandboxState,
    TransportError,
    open_cluster,
)
from rock_core._endpoint import Connection
from rock_core._link import LinkState
from rock_core._options import ClusterOptions
from rock_core._protocol import Ping, Reply, Request
from rock_core._supervisor import RECONNECT_MAX, backoff
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=1, memory=GiB)
LINK = ClusterOptions(owner="me", lease=60, grace=30, heartbeat=5, heartbeat_timeout=10)


class Switch:
    """A connector to a fake agent that refuses to connect while `refusing`; counts connects."""

    def __init__(self, agent: FakeAgent) -> None:
        self.inner = FakeAgentConnector(agent)
        self.refusing = False
        self.connects: list[float] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        self.connects.append(anyio.current_time())
        if self.refusing:
            raise TransportError(f"{self.name} refuses")
        return self.inner.connect()


class MuteAgent(FakeAgent):
    """A fake agent that stops answering pings while `mute` (a hung host)."""

    mute = False

    async def handle(self, conn: Connection, request: Request) -> Reply:
        if isinstance(request, Ping) and self.mute:
            await anyio.sleep_forever()
        return await super().handle(conn, request)


class LeasedAgent(FakeAgent):
    """A fake agent that keeps an owner's sandboxes when its link ends (a socket agent's lease)."""

    async def closed(self, conn: Connection) -> None:
        pass


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (virtual time: each poll costs no real time)
        await anyio.sleep(0.1)


@asynccontextmanager
async def cluster_of(*connectors: Switch, **changes: object) -> AsyncIterator[Cluster]:
    async with open_cluster(list(connectors), LINK, **changes) as cluster:
        yield cluster


# ---------------------------------------------------------------------------- hosts as objects


async def test_hosts_may_be_connectors_and_each_must_lead_to_its_own_host() -> None:
    a, b = FakeAgent(host_id="a"), FakeAgent(host_id="b")
    async with cluster_of(Switch(a), Switch(b)) as cluster:
        assert sorted(cluster.hosts) == ["a", "b"]
        assert cluster.hosts["a"].address == "fake://a"
        record = await cluster.create_sandbox(SPEC)
        assert record.sandbox_id in a.sandboxes or record.sandbox_id in b.sandboxes
    with pytest.raises(AlreadyExists, match=r"^two addresses lead to the same host 'a'$"):
        async with cluster_of(Switch(a), Switch(a)):
            pass


async def test_a_host_that_cannot_be_reached_at_first_fails_the_opening() -> None:
    switch = Switch(FakeAgent())
    switch.refusing = True
    with pytest.raises(TransportError, match=r"^fake://fake-host refuses$"):
        async with cluster_of(switch):
            pass
    assert len(switch.connects) == 1  # the first connect is the caller's: no retry


# ---------------------------------------------------------------------------- reconnects


async def test_a_dropped_link_is_made_again_with_backoff() -> None:
    agent = FakeAgent()
    switch = Switch(agent)
    async with cluster_of(switch) as cluster:
        host = cluster.hosts["fake-host"]
        switch.refusing = True
        began = anyio.current_time()
        await agent.disconnect()
        await until(lambda: host.state == LinkState.RECONNECTING)
        assert host.last_error == "the agent closed the link"
        await until(lambda: len(switch.connects) >= 4)  # three refused attempts
        switch.refusing = False
        await until(lambda: host.state == LinkState.CONNECTED)
        gaps = [
            b - a for a, b in zip([began, *switch.connects[1:]], switch.connects[1:], strict=False)
        ]
        for failures, gap in enumerate(gaps, start=1):  # each wait is its backoff +-50 %
            assert backoff(failures, 0.5) <= gap <= backoff(failures, 1.5)
        assert host.generation == 1 and host.down_since is None
        # The fake agent, like a local one, removed this owner's sandboxes when its link ended.
        assert await cluster.create_sandbox(SPEC, sandbox_id="sb-2")


async def test_a_host_that_stops_answering_pings_is_reconnected() -> None:
    agent = MuteAgent()
    async with cluster_of(Switch(agent)) as cluster:
        host = cluster.hosts["fake-host"]
        agent.mute = True
        began = anyio.current_time()
        await until(lambda: host.state == LinkState.RECONNECTING)
        assert host.last_error == "no heartbeat answer within 10 s"
        # The first heartbeat goes out after 5 s and is given up on 10 s later.
        assert host.down_since == pytest.approx(began + 5 + 10)
        agent.mute = False
        await until(lambda: host.state == LinkState.CONNECTED)


async def test_a_host_away_past_its_grace_is_lost_then_reconciled() -> None:
    agent = LeasedAgent()
    switch = Switch(agent)
    async with cluster_of(switch) as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        host = cluster.hosts["fake-host"]
        switch.refusing = True
        down = anyio.current_time()
        await agent.disconnect()
        await until(lambda: host.state == LinkState.RECONNECTING)
        assert host.down_since == down
        await anyio.sleep_until(down + 30 - 0.001)
        assert host.state == LinkState.RECONNECTING  # its grace is not over a moment early
        await anyio.sleep_until(down + 30 + 0.001)
        assert host.state == LinkState.LOST
        assert record.state is SandboxState.LOST
        assert cluster.statistics().hosts == ()
        await anyio.sleep(10 * RECONNECT_MAX)  # still away: the core keeps trying, capped
        switch.refusing = False
        await until(lambda: host.state == LinkState.CONNECTED)
        assert record.state is SandboxState.RUNNING
        assert record.history[-1].reason == "host reconciled"
        assert cluster.statistics().hosts[0].used.sandboxes == 1


# ---------------------------------------------------------------------------- options


def test_options_are_frozen_checked_and_replaced_by_name() -> None:
    options = ClusterOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.lease = 5  # type: ignore[misc]
    assert ClusterOptions(queue_timeout=float("inf")).queue_timeout is None
    assert options.replace(grace=5).grace == 5 and options.grace == 30
    with pytest.raises(BadRequest, match=r"^grace must be a positive, finite number of seconds"):
        options.replace(grace=0)
    with pytest.raises(BadRequest, match=r"^unknown cluster option 'graze': the options are owner"):
        options.replace(graze=5)


async def test_open_cluster_applies_keywords_over_options() -> None:
    async with cluster_of(Switch(FakeAgent()), grace=7, queue_timeout=None) as cluster:
        assert (cluster.owner, cluster.grace, cluster.queue_timeout) == ("me", 7, None)
        assert cluster.options == dataclasses.replace(LINK, grace=7, queue_timeout=None)
    with pytest.raises(BadRequest, match=r"^options must be None or a ClusterOptions, got 5$"):
        async with open_cluster([Switch(FakeAgent())], 5):  # type: ignore[arg-type]
            pass
