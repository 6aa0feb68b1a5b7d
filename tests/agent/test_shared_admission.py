"""Shared admission (`rock_agent._admit`): one agent, several owners and several cores, on
`FakeRuntime`. The agent refuses what would overrun its host with `HostFull`; a core that is
refused waits for room (elsewhere or later) and never shows the refusal to its caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest

from rock_agent._admit import DEFAULT_MAX_STARTS, Limits
from rock_agent._open import open_agent
from rock_agent._server import AgentServer
from rock_agent.testing import AgentConnector, FakeRuntime, open_fake_connection
from rock_core import AgentConnection, HostFull, QueueTimedOut, open_cluster
from rock_core.protocol import (
    SHARED_ADMISSION,
    CreateSandbox,
    Done,
    RemoveSandbox,
    SandboxInfo,
    SandboxReply,
    SandboxSpec,
)

pytestmark = pytest.mark.anyio
IMAGE = "busybox:latest"
SMALL = SandboxSpec(image=IMAGE, cpus=0.5, memory=64 << 20)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the agent side is asyncio-only


class CountingRuntime(FakeRuntime):
    """A fake engine that counts, at every create, the sandboxes it holds and the creates in
    flight, so a test sees the most the host ever had (all owners). Creates may be held
    at a gate."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.in_flight = 0
        self.most_in_flight = 0
        self.most_held = 0
        self.gate: anyio.Event | None = None
        self.entered = anyio.Event()  # set by the first create that comes in
        self.delay = 0.0

    async def create(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> SandboxInfo:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.entered.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            await anyio.sleep(self.delay)
            info = await super().create(sandbox_id, spec, owner, uid)
        finally:
            self.in_flight -= 1
        self.most_held = max(self.most_held, len(await self.list_sandboxes()))
        return info


@asynccontextmanager
async def shared_agent(runtime: FakeRuntime, limits: Limits) -> AsyncIterator[AgentServer]:
    async with open_agent(runtime, reap_on_disconnect=False, limits=limits, quiet=True) as agent:
        yield agent


async def create(conn: AgentConnection, sandbox_id: str, spec: SandboxSpec = SMALL) -> SandboxReply:
    return await conn.call(CreateSandbox(sandbox_id=sandbox_id, spec=spec), SandboxReply)


async def test_a_full_host_refuses_another_owner_with_host_full_and_takes_it_once_room_frees() -> (
    None
):
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    async with (
        shared_agent(runtime, Limits(max_sandboxes=2)) as agent,
        open_fake_connection(agent, owner="alice") as alice,
        open_fake_connection(agent, owner="bob") as bob,
    ):
        assert SHARED_ADMISSION in alice.welcome.capabilities
        assert (alice.welcome.max_starts, alice.welcome.max_sandboxes) == (DEFAULT_MAX_STARTS, 2)
        await create(alice, "a1")
        await create(alice, "a2")
        with pytest.raises(HostFull) as refused:
            await create(bob, "b1")
        assert str(refused.value).startswith(
            "host h1 is full for sandbox b1: 2 sandboxes, its limit (max_sandboxes), counting"
            " every program that uses it (2 sandboxes, 0 of 16 starts in flight)"
        )
        details = refused.value.details
        assert (details["full"], details["sandboxes"], details["starting"]) == ("sandboxes", 2, 0)
        assert details["host_id"] == "h1" and details["cpus"] == 1.0
        await alice.call(RemoveSandbox(sandbox_id="a1"), Done)
        reply = await create(bob, "b1")  # the room a removal frees is free at once
        assert reply.sandbox.sandbox_id == "b1"
        assert await create(bob, "b1")  # a retried create of a counted id is not counted again
        await alice.call(RemoveSandbox(sandbox_id="a2"), Done)
        await bob.call(RemoveSandbox(sandbox_id="b1"), Done)


async def test_cpus_and_memory_are_counted_for_every_owner_when_capacity_is_on() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE], cpus=2.0, memory=1 << 30)
    async with (
        shared_agent(runtime, Limits()) as agent,
        open_fake_connection(agent, owner="alice") as alice,
        open_fake_connection(agent, owner="bob") as bob,
    ):
        await create(alice, "a1", SandboxSpec(image=IMAGE, cpus=1.5, memory=64 << 20))
        with pytest.raises(HostFull) as cpus:
            await create(bob, "b1", SandboxSpec(image=IMAGE, cpus=1.0, memory=64 << 20))
        assert "1.5 of its 2 cpus held" in str(cpus.value)
        assert cpus.value.details["full"] == "cpus"
        with pytest.raises(HostFull) as memory:
            await create(bob, "b2", SandboxSpec(image=IMAGE, cpus=0.5, memory=1 << 30))
        assert memory.value.details["full"] == "memory"
        assert f"{64 << 20} of its {1 << 30} bytes of memory held" in str(memory.value)
        await create(bob, "b3", SandboxSpec(image=IMAGE, cpus=0.5, memory=64 << 20))  # fits
        for conn, sandbox_id in ((alice, "a1"), (bob, "b3")):
            await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)


async def test_the_start_cap_counts_creates_in_flight_of_every_owner() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    runtime.gate = anyio.Event()
    async with (
        shared_agent(runtime, Limits(max_starts=1, capacity=False)) as agent,
        open_fake_connection(agent, owner="alice") as alice,
        open_fake_connection(agent, owner="bob") as bob,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(create, alice, "a1")
            await runtime.entered.wait()
            with pytest.raises(HostFull) as refused:
                await create(bob, "b1")
            assert refused.value.details["full"] == "starts"
            assert "1 creates in flight, its start cap (max_starts)" in str(refused.value)
            runtime.gate.set()
        await create(bob, "b1")
        assert runtime.most_in_flight == 1
        for conn, sandbox_id in ((alice, "a1"), (bob, "b1")):
            await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)


async def test_sandboxes_already_there_count_even_over_the_limit_and_are_never_removed() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    async with (
        shared_agent(runtime, Limits()) as agent,
        open_fake_connection(agent, owner="alice") as alice,
    ):
        for n in range(3):
            await create(alice, f"a{n}")
    # A new agent on the same host with a smaller limit: it adopts the three.
    async with (
        shared_agent(runtime, Limits(max_sandboxes=2)) as agent,
        open_fake_connection(agent, owner="alice") as alice,
        open_fake_connection(agent, owner="bob") as bob,
    ):
        with pytest.raises(HostFull, match="3 sandboxes, its limit"):
            await create(bob, "b1")
        assert len(await runtime.list_sandboxes()) == 3
        await alice.call(RemoveSandbox(sandbox_id="a0"), Done)
        with pytest.raises(HostFull, match="2 sandboxes, its limit"):
            await create(bob, "b1")  # over-committed: room comes back only below the limit
        await alice.call(RemoveSandbox(sandbox_id="a1"), Done)
        await create(bob, "b1")
        for conn, sandbox_id in ((alice, "a2"), (bob, "b1")):
            await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)


async def test_a_sandbox_removed_behind_the_agents_back_frees_room_at_the_next_refusal() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    async with (
        shared_agent(runtime, Limits(max_sandboxes=1)) as agent,
        open_fake_connection(agent, owner="alice") as alice,
    ):
        await create(alice, "a1")
        await runtime.remove("a1")  # not through the agent (an expiry, another agent)
        await anyio.sleep(0.3)  # RELIST_EVERY: the refusal looks at the engine again
        await create(alice, "a2")
        await alice.call(RemoveSandbox(sandbox_id="a2"), Done)


async def test_three_cores_on_one_agent_all_get_their_sandboxes_and_never_overrun_it() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    runtime.delay = 0.02
    limits = Limits(max_starts=2, max_sandboxes=3, capacity=False)
    created: list[str] = []

    async def trainer(agent: AgentServer, name: str) -> None:
        async with open_cluster([AgentConnector(agent)], owner=name, queue_timeout=None) as c:
            assert c.scheduler.statistics().hosts[0].max_starts == 2  # the agent's cap

            async def one(n: int) -> None:
                record = await c.create_sandbox(SMALL, sandbox_id=f"{name}-{n}")
                created.append(record.sandbox_id)
                await anyio.sleep(0.05)  # hold it a while
                await c.delete_sandbox(record.sandbox_id)

            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(one, n)

    async with shared_agent(runtime, limits) as agent:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for name in ("t1", "t2", "t3"):
                    tg.start_soon(trainer, agent, name)
        refusals = sum(agent.admission.refusals.values())
        assert agent.admission.peak_starting <= 2 and agent.admission.peak_held <= 3
    assert sorted(created) == sorted(f"t{t}-{n}" for t in (1, 2, 3) for n in range(4))
    assert runtime.most_held <= 3 and runtime.most_in_flight <= 2
    assert refusals > 0  # the cores did meet a full host (12 creates, room for 3)
    assert await runtime.list_sandboxes() == []


async def test_a_refused_create_waits_its_queue_timeout_then_raises_and_leaves_nothing() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    async with (
        shared_agent(runtime, Limits(max_sandboxes=1, capacity=False)) as agent,
        open_cluster([AgentConnector(agent)], owner="first") as first,
        open_cluster([AgentConnector(agent)], owner="second") as second,
    ):
        held = await first.create_sandbox(SMALL)
        began = anyio.current_time()
        with pytest.raises(QueueTimedOut) as caught:
            await second.create_sandbox(SMALL, sandbox_id="late", queue_timeout=0.6)
        assert anyio.current_time() - began >= 0.6
        assert caught.value.details["queue_timeout"] == 0.6
        assert str(caught.value).startswith("sandbox late found no room within 0.6 s")
        assert "host h1" in str(caught.value) and "full" in str(caught.value)
        assert "late" not in second.state.records
        assert second.scheduler.statistics().queue_depth == 0
        assert [i.sandbox_id for i in await runtime.list_sandboxes()] == [held.sandbox_id]
        # Room again: the host is tried again after its backoff, and the create goes through.
        await first.delete_sandbox(held.sandbox_id)
        record = await second.create_sandbox(SMALL, sandbox_id="late", queue_timeout=5)
        assert [t.event for t in record.history][:2] == ["place", "created"]


async def test_a_refused_create_is_placed_on_another_host_and_its_history_says_why() -> None:
    one = CountingRuntime(host_id="h1", images=[IMAGE])
    two = CountingRuntime(host_id="h2", images=[IMAGE])
    limits = Limits(max_sandboxes=1, capacity=False)
    async with (
        shared_agent(one, limits) as agent1,
        shared_agent(two, Limits(capacity=False)) as agent2,
        open_cluster([AgentConnector(agent1)], owner="other") as other,
        open_cluster([AgentConnector(agent1), AgentConnector(agent2)], owner="me") as me,
    ):
        await other.create_sandbox(SMALL)  # fills h1 behind `me`'s back
        me.drain_host("h2")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                @tg.start_soon
                async def undrain() -> None:
                    while not me.scheduler.statistics().hosts[0].full:
                        await me.capacity_changed().wait()
                    me.drain_host("h2", False)

                record = await me.create_sandbox(SMALL, queue_timeout=None)
        assert record.host == "h2"
        events = [t.event for t in record.history]
        assert events[:4] == ["place", "requeue", "place", "created"]
        assert "host h1 is full" in record.history[1].reason


async def test_a_create_cancelled_while_it_waits_after_a_refusal_leaves_nothing() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    async with (
        shared_agent(runtime, Limits(max_sandboxes=1, capacity=False)) as agent,
        open_cluster([AgentConnector(agent)], owner="first") as first,
        open_cluster([AgentConnector(agent)], owner="second") as second,
    ):
        held = await first.create_sandbox(SMALL)
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                partial(second.create_sandbox, SMALL, sandbox_id="gone", queue_timeout=None)
            )
            while not second.scheduler.statistics().hosts[0].full:
                await second.capacity_changed().wait()
            assert second.state.records["gone"].state == "pending"  # back in the queue
            tg.cancel_scope.cancel()
        assert agent.admission.refusals["sandboxes"] >= 1
        assert "gone" not in second.state.records
        assert second.scheduler.statistics().queue_depth == 0
        assert second.scheduler.statistics().hosts[0].used.sandboxes == 0
        await first.delete_sandbox(held.sandbox_id)
        await anyio.sleep(0.1)
        assert await runtime.list_sandboxes() == []


async def test_a_retried_create_of_a_sandbox_on_a_full_host_is_answered_not_refused() -> None:
    runtime = CountingRuntime(host_id="h1", images=[IMAGE])
    async with (
        shared_agent(runtime, Limits()) as agent,
        open_fake_connection(agent, owner="alice") as alice,
    ):
        first = await create(alice, "a1")
    # A fresh agent at its limit already: the create of "a1" again finds it, as before.
    async with (
        shared_agent(runtime, Limits(max_sandboxes=1)) as agent,
        open_fake_connection(agent, owner="alice") as alice,
    ):
        again = await create(alice, "a1")
        assert again.sandbox.container_id == first.sandbox.container_id
        assert sum(agent.admission.refusals.values()) == 0
        await alice.call(RemoveSandbox(sandbox_id="a1"), Done)
