"""A cluster whose agent says "full" (`HostFull`: other programs hold the host), on fake agents
in virtual time, on both backends: the create waits for room instead of failing, tries the
host again only after a backoff (no busy loop), goes elsewhere when it can, and within its
`queue_timeout` ends in `QueueTimedOut` leaving nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest

from rock_core import Cluster, HostFull, QueueTimedOut, SandboxSpec, open_cluster
from rock_core._endpoint import Connection
from rock_core._protocol import SHARED_ADMISSION, CreateSandbox, Reply, Request, Welcome
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio
SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


class FullAgent(FakeAgent):
    """A fake agent that refuses the next `refusals` creates as full (None: every one)."""

    def __init__(self, refusals: int | None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.refusals = refusals
        self.creates: list[float] = []  # when each create came in

    async def handle(self, conn: Connection, request: Request) -> Reply:
        if isinstance(request, CreateSandbox):
            self.creates.append(anyio.current_time())
            if self.refusals is None or self.refusals > 0:
                if self.refusals is not None:
                    self.refusals -= 1
                raise HostFull(
                    f"host {self.host_id} is full for sandbox {request.sandbox_id}",
                    host_id=self.host_id,
                    full="sandboxes",
                    sandboxes=4,
                    starting=0,
                )
        return await super().handle(conn, request)


@asynccontextmanager
async def cluster_of(agents: Sequence[FakeAgent], **options: object) -> AsyncIterator[Cluster]:
    connectors = [FakeAgentConnector(a) for a in agents]
    async with open_cluster(connectors, **options) as cluster:  # type: ignore[arg-type]
        yield cluster


async def test_a_refused_create_waits_and_tries_again_after_a_doubling_backoff() -> None:
    agent = FullAgent(3, host_id="h1")
    async with cluster_of([agent]) as cluster:
        began = anyio.current_time()
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=None)
        assert record.state == "running" and record.host == "h1"
        gaps = [round(b - a, 6) for a, b in zip(agent.creates, agent.creates[1:], strict=False)]
        assert gaps == [0.1, 0.2, 0.4]  # one probe per backoff: no busy loop
        assert round(anyio.current_time() - began, 6) == 0.7
        events = [t.event for t in record.history]
        assert events == ["place", "requeue", "place", "requeue", "place", "requeue", "place",
                          "created"]  # fmt: skip
        assert record.history[1].reason == "host h1 is full for sandbox sb-1"
        assert cluster.scheduler.host_refusals("h1") == 0  # a start went through


async def test_a_host_that_stays_full_ends_the_create_in_queue_timed_out_leaving_nothing() -> None:
    agent = FullAgent(None, host_id="h1")
    async with cluster_of([agent]) as cluster:
        began = anyio.current_time()
        with pytest.raises(QueueTimedOut) as caught:
            await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=5)
        assert anyio.current_time() - began == pytest.approx(5, abs=0.01)
        assert caught.value.details["queue_timeout"] == 5
        assert str(caught.value).startswith("sandbox sb-1 found no room within 5 s")
        assert "its agent says its sandboxes are full" in str(caught.value)
        # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s, then every 2 s: at most 7 tries in 5 s.
        assert 5 <= len(agent.creates) <= 7
        assert cluster.state.records == {}
        stats = cluster.scheduler.statistics()
        assert stats.queue_depth == 0 and stats.hosts[0].used.sandboxes == 0
        assert stats.hosts[0].starting == 0
        assert agent.sandboxes == {}


async def test_a_refused_create_goes_to_another_host() -> None:
    full, free = FullAgent(None, host_id="h1"), FullAgent(0, host_id="h2", cpus=1.0)
    async with cluster_of([full, free]) as cluster:
        first = await cluster.create_sandbox(SPEC, queue_timeout=None)  # h1: spread, larger
        assert first.host == "h2"
        assert len(full.creates) == 1
        assert [t.event for t in first.history] == ["place", "requeue", "place", "created"]


async def test_a_create_cancelled_after_a_refusal_leaves_nothing() -> None:
    agent = FullAgent(None, host_id="h1")
    async with cluster_of([agent]) as cluster:
        with anyio.move_on_after(1.0):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=None)
        assert len(agent.creates) >= 2
        assert cluster.state.records == {}
        stats = cluster.scheduler.statistics()
        assert stats.queue_depth == 0 and stats.hosts[0].starting == 0
        assert cluster.waits.waiting == set()
        agent.refusals = 0  # room again: the next create goes through
        await anyio.sleep(2)  # past the backoff
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=None)
        assert record.state == "running"


class CappedAgent(FakeAgent):
    """A fake agent whose handshake tells a start cap and a sandbox limit, with or without
    the capability that says it enforces them."""

    def __init__(self, shared: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.shared = shared

    async def accept(self, conn: Connection) -> Welcome:
        welcome = await super().accept(conn)
        capabilities = [*welcome.capabilities, *([SHARED_ADMISSION] if self.shared else [])]
        return msgspec.structs.replace(
            welcome, capabilities=capabilities, max_starts=2, max_sandboxes=5
        )


async def test_the_agents_caps_are_taken_only_from_an_agent_that_enforces_them() -> None:
    agents = [CappedAgent(True, host_id="new"), CappedAgent(False, host_id="old")]
    async with cluster_of(agents) as cluster:
        hosts = {h.host_id: h for h in cluster.scheduler.statistics().hosts}
        assert (hosts["new"].max_starts, hosts["new"].capacity.sandboxes) == (2, 5)
        assert (hosts["old"].max_starts, hosts["old"].capacity.sandboxes) == (8, 0)
