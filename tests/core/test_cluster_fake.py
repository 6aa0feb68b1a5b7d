"""The cluster driver against fake agents: placement, lifecycle, idempotence, queueing."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from rock_core import (
    AlreadyExists,
    CapacityError,
    Cluster,
    ImageNotFound,
    QueueTimedOut,
    SandboxNotFound,
    SandboxRecord,
    SandboxSpec,
    SandboxState,
    TimedOut,
)
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=1, memory=GiB)


def assert_no_resources_in_use(cluster: Cluster) -> None:
    stats = cluster.statistics()
    assert (stats.placed, stats.starting, stats.queue_depth) == (0, 0, 0)
    for host in stats.hosts:
        assert (host.used.cpus, host.used.memory, host.used.sandboxes) == (0, 0, 0), host
        assert host.starting == 0, host


async def test_concurrent_creates_spread_over_equal_hosts() -> None:
    # Every host has the image, so image locality does not skew the spread.
    async with open_fake_cluster(3, cpus=16, memory=64 * GiB, images=["img:1"]) as cluster:
        records: list[SandboxRecord] = []

        async def create() -> None:
            records.append(await cluster.create_sandbox(SPEC))

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(create)
        counts = Counter(record.host for record in records)
        assert set(counts) == {"fake-0", "fake-1", "fake-2"}
        assert max(counts.values()) - min(counts.values()) <= 1
        for host_id, agent in cluster.agents.items():
            assert len(agent.sandboxes) == counts[host_id]
        for record in records:
            assert record.state is SandboxState.RUNNING
            steps = [(t.from_state, t.to_state) for t in record.history]
            assert steps == [
                (SandboxState.PENDING, SandboxState.CREATING),
                (SandboxState.CREATING, SandboxState.RUNNING),
            ]
            assert record.history[0].reason == f"placed on {record.host}"
            assert record.info is not None
            assert record.history[1].reason == f"container {record.info.container_id[:12]} running"
    # Leaving the block deletes every sandbox.
    assert all(r.state is SandboxState.DELETED for r in records)
    assert all(not agent.sandboxes for agent in cluster.agents.values())


async def test_stop_start_delete_are_idempotent() -> None:
    async with open_fake_cluster() as cluster:
        agent = cluster.agents["fake-0"]
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        await cluster.stop_sandbox("sb-1")
        assert record.state is SandboxState.STOPPED
        assert agent.sandboxes["sb-1"].info.state == "exited"
        length = len(record.history)
        assert await cluster.stop_sandbox("sb-1") is record  # stopping a stopped one: no-op
        assert len(record.history) == length

        await cluster.start_sandbox("sb-1")
        assert record.state is SandboxState.RUNNING
        assert agent.sandboxes["sb-1"].info.state == "running"
        length = len(record.history)
        assert await cluster.start_sandbox("sb-1") is record  # starting a running one: no-op
        assert len(record.history) == length

        await cluster.delete_sandbox("sb-1")
        assert record.state is SandboxState.DELETED
        assert "sb-1" not in agent.sandboxes
        length = len(record.history)
        assert await cluster.delete_sandbox("sb-1") is record  # deleting a deleted one: no-op
        assert len(record.history) == length
        assert [t.to_state for t in record.history] == [
            SandboxState.CREATING,
            SandboxState.RUNNING,
            SandboxState.STOPPING,
            SandboxState.STOPPED,
            SandboxState.CREATING,
            SandboxState.RUNNING,
            SandboxState.DELETING,
            SandboxState.DELETED,
        ]
        assert_no_resources_in_use(cluster)

        with pytest.raises(SandboxNotFound, match=r"^no sandbox 'nope' in this cluster$"):
            await cluster.delete_sandbox("nope")
        with pytest.raises(SandboxNotFound, match=r"^sandbox sb-1 was deleted$"):
            await cluster.inspect("sb-1")


async def test_create_with_an_id_is_idempotent_for_the_same_spec() -> None:
    async with open_fake_cluster() as cluster:
        first = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        again = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        assert again is first
        other = SandboxSpec(image="img:1", cpus=2, memory=GiB)
        with pytest.raises(
            AlreadyExists, match=r"^sandbox 'sb-1' already exists with a different spec$"
        ):
            await cluster.create_sandbox(other, sandbox_id="sb-1")
        assert len(cluster.agents["fake-0"].sandboxes) == 1
        assert cluster.statistics().placed == 1


async def test_spec_larger_than_any_host_is_refused_at_once() -> None:
    async with open_fake_cluster(2, cpus=4, memory=8 * GiB) as cluster:
        huge = SandboxSpec(image="img:1", cpus=5, memory=GiB)
        with pytest.raises(CapacityError, match=r"^no host can ever hold request 'sb-huge'"):
            await cluster.create_sandbox(huge, sandbox_id="sb-huge")
        assert_no_resources_in_use(cluster)
        assert all(not agent.sandboxes for agent in cluster.agents.values())


async def test_a_full_host_queues_the_next_sandbox_until_room_is_made() -> None:
    async with open_fake_cluster(1, cpus=2, memory=8 * GiB) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        await cluster.create_sandbox(SPEC, sandbox_id="sb-2")
        third_done = anyio.Event()

        async def create_third() -> None:
            await cluster.create_sandbox(SPEC, sandbox_id="sb-3")
            third_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(create_third)
            await anyio.wait_all_tasks_blocked()
            # Everything that can run has run: the third still waits for room.
            assert not third_done.is_set()
            assert cluster.record("sb-3").state is SandboxState.PENDING
            assert cluster.statistics().queue_depth == 1
            assert "sb-3" not in cluster.agents["fake-0"].sandboxes

            await cluster.delete_sandbox("sb-1")
            await third_done.wait()
        third = cluster.record("sb-3")
        assert third.state is SandboxState.RUNNING
        assert third.history[0].reason == "placed on fake-0"
        # It started only after sb-1 was gone.
        assert third.history[0].at >= cluster.record("sb-1").history[-1].at
        assert set(cluster.agents["fake-0"].sandboxes) == {"sb-2", "sb-3"}


async def test_queue_timeout_is_a_capacity_error_saying_what_holds_the_host() -> None:
    async with open_fake_cluster(1, cpus=1, memory=8 * GiB) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        with pytest.raises(CapacityError) as info:
            await cluster.create_sandbox(SPEC, sandbox_id="sb-2", queue_timeout=0.05)
        assert str(info.value) == (
            "sandbox sb-2 found no room within 0.05 s: it needs 1 cpu and 1 GiB;"
            " host fake-0 (1 cpu, 8 GiB): this cluster holds 1 sandbox (1 cpu, 1 GiB),"
            " free 0 cpus and 7 GiB. Only this cluster's sandboxes are counted: other owners'"
            " and the engine's own limits are not. Nothing fits now on any host."
            " (queue_timeout=None waits without a limit.)"
        )
        assert type(info.value) is QueueTimedOut and isinstance(info.value, TimedOut)
        assert info.value.details["sandbox_id"] == "sb-2"
        assert info.value.details["queue_timeout"] == 0.05
        assert info.value.details["waited"] == 0.05
        with pytest.raises(SandboxNotFound):
            cluster.record("sb-2")  # a request that never got a host is forgotten
        assert cluster.agents["fake-0"].sandboxes.keys() == {"sb-1"}


async def test_queue_timeout_leaves_nothing_queued_or_held() -> None:
    async with open_fake_cluster(1, cpus=1, memory=8 * GiB) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        with pytest.raises(CapacityError, match=r"^sandbox sb-2 found no room within 0.01 s: "):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-2", queue_timeout=0.01)
        assert cluster.statistics().queue_depth == 0
        await cluster.delete_sandbox("sb-1")
        assert_no_resources_in_use(cluster)


async def test_image_failure_fails_the_sandbox_and_releases_its_resources() -> None:
    async with open_fake_cluster(2, fail_images={"bad:img"}) as cluster:
        bad = SandboxSpec(image="bad:img", cpus=1, memory=GiB)
        with pytest.raises(
            ImageNotFound, match=r"^image 'bad:img' is not on this host and could not be pulled$"
        ):
            await cluster.create_sandbox(bad, sandbox_id="sb-bad")
        record = cluster.record("sb-bad")
        assert record.state is SandboxState.FAILED
        assert record.history[-1].event == "create_failed"
        assert "bad:img" in record.history[-1].reason
        assert isinstance(record.error, ImageNotFound)
        assert_no_resources_in_use(cluster)
        # A retry with the same id reports the same failure.
        with pytest.raises(ImageNotFound):
            await cluster.create_sandbox(bad, sandbox_id="sb-bad")
        # Deleting a failed sandbox is allowed: the agent never had it.
        await cluster.delete_sandbox("sb-bad")
        assert record.state is SandboxState.DELETED
        assert_no_resources_in_use(cluster)
