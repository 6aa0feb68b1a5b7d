"""Lifecycle calls that race each other on one sandbox: no `IllegalTransition` reaches the
caller, no container and no scheduler room leaks. Fake agents, asyncio and trio."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from rock_core import (
    Cluster,
    SandboxFailed,
    SandboxNotFound,
    SandboxRecord,
    SandboxSpec,
    SandboxState,
)
from rock_core.testing import FakeCluster, open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=1, memory=GiB)


def assert_idle(cluster: Cluster) -> None:
    stats = cluster.statistics()
    assert (stats.placed, stats.starting, stats.queue_depth) == (0, 0, 0)
    for host in stats.hosts:
        assert (host.used.cpus, host.used.memory, host.used.sandboxes, host.starting) == (
            0,
            0,
            0,
            0,
        )


async def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        for _ in iter(int, 1):
            if condition():
                return
            await anyio.sleep(0.001)


async def wait_state(cluster: Cluster, sandbox_id: str, state: SandboxState) -> None:
    def reached() -> bool:
        known = {r.sandbox_id: r for r in cluster.records()}
        return sandbox_id in known and known[sandbox_id].state is state

    await eventually(reached)


async def test_delete_during_create_cancels_it_and_leaves_nothing() -> None:
    gate = anyio.Event()

    async def slow(sandbox_id: str) -> None:
        await gate.wait()

    async with open_fake_cluster(1, start_latency=slow) as cluster:
        agent = cluster.agents["fake-0"]
        outcome: list[BaseException] = []

        async def create() -> None:
            try:
                await cluster.create_sandbox(SPEC, sandbox_id="x1")
            except SandboxNotFound as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await wait_state(cluster, "x1", SandboxState.CREATING)
            record = await cluster.delete_sandbox("x1")
            gate.set()
        assert record.state is SandboxState.DELETED
        assert [str(e) for e in outcome] == ["sandbox x1 was deleted while it was being created"]
        await eventually(lambda: not agent.sandboxes)
        assert_idle(cluster)


async def test_delete_of_a_request_placed_but_not_yet_resumed_gives_its_room_back() -> None:
    async with open_fake_cluster(1) as cluster:
        cluster.drain_host("fake-0")
        failures: list[BaseException] = []

        async def create() -> None:
            try:
                await cluster.create_sandbox(SPEC, sandbox_id="q1")
            except SandboxNotFound as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await wait_state(cluster, "q1", SandboxState.PENDING)
            # Undraining places q1 at once, before its create runs again; delete it right then.
            cluster.drain_host("fake-0", False)
            assert cluster.record("q1").holds_resources
            await cluster.delete_sandbox("q1")
        assert [type(e) for e in failures] == [SandboxNotFound]
        assert_idle(cluster)


async def test_concurrent_deletes_and_stops_are_all_fine() -> None:
    async with open_fake_cluster(1) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(cluster.stop_sandbox, "s1")
            tg.start_soon(cluster.stop_sandbox, "s1")
        assert cluster.record("s1").state is SandboxState.STOPPED
        async with anyio.create_task_group() as tg:
            tg.start_soon(cluster.start_sandbox, "s1")
            tg.start_soon(cluster.start_sandbox, "s1")
        assert cluster.record("s1").state is SandboxState.RUNNING
        stop_outcome: list[str] = []

        async def stop() -> None:
            try:
                await cluster.stop_sandbox("s1")
                stop_outcome.append("stopped")
            except SandboxNotFound:
                stop_outcome.append("was deleted")

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(cluster.delete_sandbox, "s1")
            tg.start_soon(stop)
        assert cluster.record("s1").state is SandboxState.DELETED
        assert stop_outcome in (["stopped"], ["was deleted"])
        assert_idle(cluster)


async def test_stop_and_start_after_delete_say_it_was_deleted() -> None:
    async with open_fake_cluster(1) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="d1")
        await cluster.delete_sandbox("d1")
        with pytest.raises(SandboxNotFound, match="cannot start sandbox d1: it was deleted"):
            await cluster.start_sandbox("d1")
        with pytest.raises(SandboxNotFound, match="cannot stop sandbox d1: it was deleted"):
            await cluster.stop_sandbox("d1")


async def test_a_failed_sandbox_cannot_be_started_only_deleted() -> None:
    async with open_fake_cluster(1, fail_images=["bad:1"]) as cluster:
        with pytest.raises(Exception, match="bad:1"):
            await cluster.create_sandbox(SandboxSpec(image="bad:1"), sandbox_id="f1")
        record = cluster.record("f1")
        assert record.state is SandboxState.FAILED
        with pytest.raises(SandboxFailed, match="cannot start sandbox f1: it failed"):
            await cluster.start_sandbox("f1")
        await cluster.delete_sandbox("f1")
        assert record.state is SandboxState.DELETED


async def test_a_create_retried_after_a_cancelled_one_starts_afresh() -> None:
    gate = anyio.Event()

    async def slow(sandbox_id: str) -> None:
        await gate.wait()

    async with open_fake_cluster(1, start_latency=slow) as cluster:
        results: list[SandboxState] = []
        first = anyio.CancelScope()

        async def first_create() -> None:
            with first:
                await cluster.create_sandbox(SPEC, sandbox_id="r1")

        async def retry() -> None:
            record = await cluster.create_sandbox(SPEC, sandbox_id="r1")
            results.append(record.state)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_create)
            await wait_state(cluster, "r1", SandboxState.CREATING)
            first_record = cluster.record("r1")
            tg.start_soon(retry)  # waits for the first create to settle, then tries again
            await anyio.sleep(0.01)
            first.cancel()
            await eventually(lambda: cluster.record("r1") is not first_record)
            gate.set()
        assert first_record.state is SandboxState.FAILED
        assert results == [SandboxState.RUNNING]
        assert list(cluster.agents["fake-0"].sandboxes) == ["r1"]


# ---------------------------------------------------------------------------- the same id anew


async def deleted_then_made_anew(cluster: FakeCluster, sandbox_id: str) -> SandboxRecord:
    """Once `sandbox_id` is deleted, create a new sandbox under the same id."""
    while cluster.record(sandbox_id).state is not SandboxState.DELETED:
        await anyio.lowlevel.checkpoint()  # at once: before the waiting operation resumes
    return await cluster.create_sandbox(SPEC, sandbox_id=sandbox_id)


async def test_a_second_delete_that_waited_leaves_a_new_sandbox_of_the_same_id_alone() -> None:
    async with open_fake_cluster(1, cpus=8, memory=64 * GiB) as cluster:
        old = await cluster.create_sandbox(SPEC, sandbox_id="sb-x")
        made: list[SandboxRecord] = []

        async def make() -> None:
            made.append(await deleted_then_made_anew(cluster, "sb-x"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(cluster.delete_sandbox, "sb-x")
            tg.start_soon(cluster.delete_sandbox, "sb-x")  # waits on the old record's lock
            tg.start_soon(make)
        assert old.state is SandboxState.DELETED
        assert made[0] is not old and made[0].state is SandboxState.RUNNING
        assert cluster.record("sb-x") is made[0]
        assert "sb-x" in cluster.agents["fake-0"].sandboxes  # its container stays


async def test_a_stop_that_waited_behind_a_delete_does_not_stop_the_new_sandbox() -> None:
    async with open_fake_cluster(1, cpus=8, memory=64 * GiB) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-x")
        made: list[SandboxRecord] = []
        refused: list[BaseException] = []

        async def stop() -> None:
            await anyio.lowlevel.checkpoint()  # behind the delete, on the old record's lock
            try:
                await cluster.stop_sandbox("sb-x")
            except SandboxNotFound as exc:
                refused.append(exc)

        async def make() -> None:
            made.append(await deleted_then_made_anew(cluster, "sb-x"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(cluster.delete_sandbox, "sb-x")
            tg.start_soon(stop)
            tg.start_soon(make)
        assert [str(e) for e in refused] == ["cannot stop sandbox sb-x: it was deleted"]
        assert made[0].state is SandboxState.RUNNING
