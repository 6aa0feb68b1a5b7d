"""Warm pools in virtual time: release (delete or reset), its errors, closing the pool, and
the cluster's exit."""

from __future__ import annotations

import pytest

from rock_core import (
    BadRequest,
    NotFound,
    RecordPool,
    SandboxRecord,
    open_pool,
)
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import DELETED, RUNNING, SPEC, Gate, GiB, assert_no_resources_in_use, until

pytestmark = pytest.mark.anyio


async def test_release_deletes_and_reset_puts_the_member_back() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        agent = cluster.agents["fake-0"]
        async with open_pool(cluster, SPEC, min_size=1, max_size=2) as pool:
            await pool.wait_ready()
            first = await pool.acquire()
            await pool.release(first.sandbox_id)
            assert first.state is DELETED
            assert first.sandbox_id not in agent.sandboxes

            await pool.wait_ready()
            second = await pool.acquire()
            await pool.wait_ready()  # the refill replaced it: size 1 of at most 2
            await pool.release(second.sandbox_id, reset=True)
            assert second.state is RUNNING
            assert [t.reason for t in second.history[-4:]] == [
                "stop requested",
                "container stopped",
                "start requested",
                "container running again",
            ]
            stats = pool.statistics()
            assert (stats.ready, stats.resets, stats.handed_out) == (2, 1, 0)
            # The reset member comes out again, after the older ready one.
            again = [await pool.acquire(), await pool.acquire()]
            assert again[1] is second
            for record in again:
                await pool.release(record.sandbox_id)


async def test_a_reset_beyond_max_size_deletes_the_member() -> None:
    prepared: list[str] = []

    async def prepare(record: SandboxRecord) -> None:
        prepared.append(record.sandbox_id)

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, max_size=1, prepare=prepare) as pool:
            await pool.wait_ready()
            record = await pool.acquire()
            await pool.wait_ready()  # full again: a reset member has no place
            await pool.release(record.sandbox_id, reset=True)
            assert record.state is DELETED
            assert not any(t.reason == "stop requested" for t in record.history)
            assert prepared.count(record.sandbox_id) == 1  # not prepared again
            assert pool.statistics().resets == 0


async def test_release_errors_are_clear() -> None:
    async with open_fake_cluster(1) as cluster:
        other = await cluster.create_sandbox(SPEC, sandbox_id="sb-other")
        async with open_pool(cluster, SPEC, min_size=1, max_size=2, name="p") as pool:
            with pytest.raises(
                BadRequest,
                match=r"^sandbox sb-other is not handed out by pool 'p' \(never acquired from "
                r"it, or released already\)$",
            ):
                await pool.release(other.sandbox_id)
            await pool.wait_ready()
            record = await pool.acquire()  # a hit: the target stays 1
            await pool.wait_ready()
            await pool.release(record.sandbox_id, reset=True)  # 1 of at most 2: put back
            assert record.state is RUNNING and pool.statistics().resets == 1
            with pytest.raises(BadRequest, match=r"is not handed out by pool 'p'"):
                await pool.release(record.sandbox_id)  # back in the pool: not the caller's
            held = await pool.acquire()
            await cluster.delete_sandbox(held.sandbox_id)  # deleted by its holder
            await pool.release(held.sandbox_id)  # fine: nothing left to do
            await pool.release(held.sandbox_id)  # still fine: it is gone
            assert pool.statistics().handed_out == 0


async def test_close_deletes_idle_members_and_keeps_handed_out_ones() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        agent = cluster.agents["fake-0"]
        async with open_pool(cluster, SPEC, min_size=3, name="p") as pool:
            await pool.wait_ready()
            held = await pool.acquire()
            await pool.wait_ready()
            idle = list(pool._stock.members.values())
            assert cluster.statistics().pool("p").ready == 3
        assert pool.closed
        assert all(r.state is DELETED for r in idle)
        assert set(agent.sandboxes) == {held.sandbox_id}
        assert held.state is RUNNING
        assert cluster.statistics().pools == ()
        with pytest.raises(NotFound, match=r"^no open pool named 'p' \(open: \[\]\)$"):
            cluster.statistics().pool("p")
        with pytest.raises(BadRequest, match=r"^pool 'p' is closed$"):
            await pool.acquire()
        with pytest.raises(BadRequest, match=r"^pool 'p' is closed$"):
            await pool.wait_ready()
        await pool.release(held.sandbox_id, reset=True)  # closed: deleted, not reset
        assert held.state is DELETED
        assert agent.sandboxes == {}
        assert_no_resources_in_use(cluster)


async def test_close_cancels_refills_in_flight() -> None:
    gate = Gate()
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, start_latency=gate) as cluster:
        agent = cluster.agents["fake-0"]
        async with open_pool(cluster, SPEC, min_size=2) as pool:
            await until(lambda: len(gate.waiting) == 2, "two refills in flight")
        assert pool.statistics().in_flight == 0
        assert agent.sandboxes == {}
        assert all(r.state is not RUNNING for r in cluster.records())
        assert_no_resources_in_use(cluster)


async def test_cluster_exit_stops_refills_of_a_pool_left_open() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        pool = RecordPool(cluster, SPEC, min_size=2)
        await pool._open()
        await pool.wait_ready()
        held = await pool.acquire()
    assert pool.closed
    assert held.state is DELETED
    assert all(r.state is DELETED for r in cluster.records())
    assert_no_resources_in_use(cluster)


# ------------------------------------------------------------------ bounded cleanups
