"""The start gate seam (`rock_core._start_gate`) with `FakeStartGate`, in virtual time, on both
backends: the cap holds, and a permit is given back however its create ends (made, refused as
full, failed, timed out, cancelled, deleted), with nothing left in the cluster."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest

from rock_core import (
    BadRequest,
    Cluster,
    ImageNotFound,
    QueueTimedOut,
    SandboxNotFound,
    SandboxSpec,
    TransportError,
    open_cluster,
)
from rock_core.testing import FakeAgent, FakeAgentConnector, FakeStartGate
from tests.core.test_host_full import FullAgent
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio
SPEC = SandboxSpec(image="img:1", cpus=0.5, memory=64 << 20)


@asynccontextmanager
async def cluster_of(
    agents: Sequence[FakeAgent], gate: object, **options: object
) -> AsyncIterator[Cluster]:
    connectors = [FakeAgentConnector(a) for a in agents]
    async with open_cluster(connectors, start_gate=gate, **options) as cluster:  # type: ignore[arg-type]
        yield cluster


def balanced(gate: FakeStartGate) -> None:
    """Every token asked for was released exactly once; none is held or waiting."""
    asked = Counter(token for kind, token in gate.log if kind == "acquire")
    released = Counter(token for kind, token in gate.log if kind == "release")
    assert asked == released, (asked, released)
    assert gate.held == set()
    assert not gate._line


def nothing_left(cluster: Cluster) -> None:
    stats = cluster.scheduler.statistics()
    assert (stats.queue_depth, stats.placed, stats.starting) == (0, 0, 0), stats


async def test_the_gate_caps_starts_in_flight_across_hosts() -> None:
    agents = [FakeAgent(host_id=f"h{i}", start_latency=1.0) for i in range(3)]
    gate = FakeStartGate(2)
    async with cluster_of(agents, gate) as cluster:
        began = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(9):
                tg.start_soon(partial(cluster.create_sandbox, SPEC, sandbox_id=f"sb-{i}"))
        took = anyio.current_time() - began
        # Counted apart from the gate: the agents' own start times never overlap more than 2.
        spans = [(s.began, s.began + s.slept) for a in agents for s in a.starts.values()]
        assert len(spans) == 9
        peak = max(sum(1 for b, e in spans if b <= t < e) for t, _ in spans)
        assert peak == 2
        assert gate.peak == 2
        assert took == pytest.approx(5.0, abs=0.01)  # 9 starts of 1 s, 2 at a time: 5 rounds
        balanced(gate)
        assert len([k for k, _ in gate.log if k == "acquire"]) == 9
    assert gate.held == set()


async def test_a_permit_wait_counts_against_queue_timeout_and_leaves_nothing() -> None:
    agent = FakeAgent(host_id="h1")
    gate = FakeStartGate(1)
    await gate.acquire("another-program")
    async with cluster_of([agent], gate) as cluster:
        began = anyio.current_time()
        with pytest.raises(QueueTimedOut) as caught:
            await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=3.0)
        assert anyio.current_time() - began == pytest.approx(3.0, abs=0.01)
        assert "got no start permit from FakeStartGate(permits=1)" in str(caught.value)
        assert "within its queue_timeout (3.0 s)" in str(caught.value)
        assert caught.value.details["sandbox_id"] == "sb-1"
        assert "sb-1" not in cluster.state.records
        assert agent.sandboxes == {}
        nothing_left(cluster)
        assert gate.held == {"another-program"}
        await gate.release("another-program")
        balanced(gate)
        # The same id starts afresh once the gate has room.
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=3.0)
        assert record.state.value == "running"
        balanced(gate)


async def test_a_cancelled_caller_keeps_no_permit_waiting_or_sending() -> None:
    agent = FakeAgent(host_id="h1", start_latency=5.0)
    gate = FakeStartGate(1)
    async with cluster_of([agent], gate) as cluster:
        await gate.acquire("another-program")
        with anyio.move_on_after(1.0):  # cancelled while it waits for the permit
            await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=None)
        assert gate.held == {"another-program"}
        assert not gate._line
        nothing_left(cluster)
        await gate.release("another-program")
        with anyio.move_on_after(1.0):  # cancelled while its create is at the agent
            await cluster.create_sandbox(SPEC, sandbox_id="sb-2", queue_timeout=None)
        balanced(gate)
        await anyio.sleep(6.0)  # the quiet removal of what the cancelled create made
        assert agent.sandboxes == {}
        nothing_left(cluster)


async def test_a_failed_create_and_a_full_host_give_their_permits_back() -> None:
    gate = FakeStartGate(1)
    failing = FakeAgent(host_id="h1", fail_images=["bad:1"])
    async with cluster_of([failing], gate) as cluster:
        with pytest.raises(ImageNotFound):
            await cluster.create_sandbox(SandboxSpec(image="bad:1"), sandbox_id="sb-1")
        balanced(gate)
    full = FullAgent(2, host_id="h2")
    gate = FakeStartGate(1)
    async with cluster_of([full], gate) as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-2", queue_timeout=None)
        assert record.state.value == "running"
        tokens = [token for kind, token in gate.log if kind == "acquire"]
        assert len(tokens) == 3 and len(set(tokens)) == 3  # a fresh token per try
        assert all(token.startswith("sb-2/") for token in tokens)
        balanced(gate)


async def test_a_sandbox_deleted_while_it_waits_for_a_permit() -> None:
    gate = FakeStartGate(1)
    async with cluster_of([FakeAgent(host_id="h1")], gate) as cluster:
        await gate.acquire("another-program")
        async with anyio.create_task_group() as tg:

            async def create() -> None:
                with pytest.raises(SandboxNotFound):
                    await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=None)

            tg.start_soon(create)
            await anyio.sleep(1.0)
            await cluster.delete_sandbox("sb-1")
            await anyio.sleep(1.0)
            await gate.release("another-program")
        balanced(gate)
        nothing_left(cluster)


async def test_a_broken_gate_is_a_transport_error_and_leaves_nothing() -> None:
    gate = FakeStartGate(1)
    gate.fail = TransportError("the limiter is gone")
    async with cluster_of([FakeAgent(host_id="h1")], gate) as cluster:
        with pytest.raises(TransportError, match="the limiter is gone"):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        gate.fail = OSError("socket closed")
        with pytest.raises(TransportError, match=r"start gate FakeStartGate\(permits=1\) failed"):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-2")
        nothing_left(cluster)
        assert cluster.state.records == {}
        balanced(gate)


async def test_bad_gates_are_bad_requests() -> None:
    for bad in (1, "gate", object(), FakeStartGate):
        with pytest.raises(BadRequest, match="start_gate must be None or an object with async"):
            async with cluster_of([FakeAgent()], bad):
                pass
    for permits in (0, -1, 1.5, True, "2"):
        with pytest.raises(BadRequest, match="permits must be a whole number >= 1"):
            FakeStartGate(permits)  # type: ignore[arg-type]
