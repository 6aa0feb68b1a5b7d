"""Warm pools against fake agents, in virtual time: filling, hand-outs (never one member
twice), the fallback to a cold start, refills, `max_size`, `refill_concurrency`, the target's
growth and shrink, statistics."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import rock_core
import rock_core._cleanup
import rock_sdk
from rock_core import (
    BadRequest,
    RecordPool,
    SandboxRecord,
    SandboxSpec,
    open_pool,
)
from rock_core._pool import POOL_LABEL
from rock_core._pool_policy import Plan
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import (
    DELETED,
    RUNNING,
    SPEC,
    Gate,
    GiB,
    assert_no_resources_in_use,
    live_on_agents,
    until,
)

pytestmark = pytest.mark.anyio


async def test_fills_to_min_size_with_labelled_members() -> None:
    async with open_fake_cluster(2, cpus=8, memory=32 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=3, name="warm") as pool:
            await pool.wait_ready()
            stats = pool.statistics()
            assert (stats.ready, stats.in_flight, stats.size, stats.refills) == (3, 0, 3, 3)
            assert (stats.hits, stats.misses, stats.failures, stats.handed_out) == (0, 0, 0, 0)
            assert stats.name == "warm" and stats.image == "img:1"
            assert (stats.min_size, stats.max_size, stats.target) == (3, 3, 3)
            assert stats.refill_rate > 0
            agents = [a for a in cluster.agents.values() if a.sandboxes]
            members = [s for a in agents for s in a.sandboxes.values()]
            assert len(members) == 3
            assert all(m.info.labels == {POOL_LABEL: "warm"} for m in members)
            assert all(m.spec.labels == {POOL_LABEL: "warm"} for m in members)
            assert pool.spec.labels == {POOL_LABEL: "warm"}
            # The members are ordinary sandboxes of the cluster, spread like any create.
            assert {r.host for r in cluster.records()} == {"fake-0", "fake-1"}
        assert live_on_agents(cluster) == set()
        assert_no_resources_in_use(cluster)


async def test_concurrent_acquires_never_hand_out_a_member_twice() -> None:
    async with open_fake_cluster(2, cpus=64, memory=256 * GiB, start_latency=0.02) as cluster:
        async with open_pool(cluster, SPEC, min_size=6, max_size=10) as pool:
            await pool.wait_ready()
            got: list[SandboxRecord] = []

            async def take() -> None:
                got.append(await pool.acquire())

            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(take)
            ids = [r.sandbox_id for r in got]
            assert len(ids) == 40 and len(set(ids)) == 40
            assert all(r.state is RUNNING for r in got)
            stats = pool.statistics()
            assert stats.hits + stats.misses == 40
            assert stats.hits >= 6 and stats.misses >= 1
            assert stats.handed_out == 40
            # Nothing handed out is also waiting as ready.
            await pool.wait_ready(6)
            ready_ids = set(pool._stock.policy.ready_ids())
            assert not ready_ids & set(ids)
            async with anyio.create_task_group() as tg:
                for sandbox_id in ids:
                    tg.start_soon(pool.release, sandbox_id)
            assert all(r.state is DELETED for r in got)
            assert pool.statistics().handed_out == 0
        assert live_on_agents(cluster) == set()


async def test_acquire_release_churn_never_shares_a_sandbox() -> None:
    async with open_fake_cluster(1, cpus=64, memory=256 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=3, max_size=6) as pool:
            held: set[str] = set()
            seen: list[str] = []

            async def worker() -> None:
                for i in range(15):
                    record = await pool.acquire()
                    assert record.sandbox_id not in held, "handed out twice"
                    assert record.state is RUNNING
                    held.add(record.sandbox_id)
                    seen.append(record.sandbox_id)
                    await anyio.lowlevel.checkpoint()
                    held.discard(record.sandbox_id)
                    await pool.release(record.sandbox_id, reset=i % 3 == 0)

            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(worker)
            stats = pool.statistics()
            assert stats.hits + stats.misses == 180
            assert stats.resets > 0
            # A sandbox comes out again only after a reset (one that ended with the pool
            # full deletes it instead).
            for sid in set(seen):
                resets = sum(1 for t in cluster.record(sid).history if t.reason == "stop requested")
                assert 1 <= seen.count(sid) <= resets + 1
            assert len(set(seen)) < len(seen)
        assert live_on_agents(cluster) == set()
        assert_no_resources_in_use(cluster)


async def test_an_empty_pool_falls_back_to_a_cold_start_and_grows() -> None:
    gate = Gate()
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, start_latency=gate) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, max_size=3, name="p") as pool:
            await until(lambda: gate.waiting, "the first refill to reach the agent")
            assert pool.statistics().in_flight == 1

            async def open_later() -> None:
                await until(lambda: len(gate.waiting) >= 2, "the cold start to reach the agent")
                gate.opened.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(open_later)
                record = await pool.acquire()  # nothing ready yet: a miss
            assert record.state is RUNNING
            assert record.spec.labels == {POOL_LABEL: "p"}
            stats = pool.statistics()
            assert (stats.hits, stats.misses, stats.handed_out) == (0, 1, 1)
            assert stats.target == 2  # the miss raised the target
            await pool.wait_ready(2)
            assert pool.statistics().size == 2
            await pool.release(record.sandbox_id)


async def test_refills_back_to_min_size_after_hand_outs() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=3) as pool:
            await pool.wait_ready()
            taken = [await pool.acquire() for _ in range(3)]
            assert pool.statistics().hits == 3
            await pool.wait_ready()
            stats = pool.statistics()
            assert (stats.ready, stats.refills, stats.handed_out) == (3, 6, 3)
            ready = set(pool._stock.policy.ready_ids())
            assert not ready & {r.sandbox_id for r in taken}
            for record in taken:
                await pool.release(record.sandbox_id)


async def test_max_size_bounds_what_the_pool_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_fake_cluster(1, cpus=64, memory=256 * GiB, start_latency=0.01) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, max_size=3, refill_concurrency=8) as pool:
            # The size grows only when the policy plans refills (or takes a reset back): look
            # after every plan. (A watcher task that spins on checkpoints would stop the
            # virtual clock.)
            policy = pool._stock.policy
            plan = policy.plan
            sizes: list[int] = []

            def plan_and_look(now: float, free_starts: int) -> Plan:
                made = plan(now, free_starts)
                sizes.append(policy.size)
                return made

            monkeypatch.setattr(policy, "plan", plan_and_look)
            taken = [await pool.acquire() for _ in range(10)]
            await pool.wait_ready(3)
            await anyio.sleep(0.05)
            largest = max(sizes)
            stats = pool.statistics()
            assert largest == 3
            assert (stats.target, stats.size, stats.ready) == (3, 3, 3)
            with pytest.raises(
                BadRequest, match=r"^pool '.*' holds at most 3 sandboxes; cannot wait for 4 ready$"
            ):
                await pool.wait_ready(4)
            for record in taken:
                await pool.release(record.sandbox_id)


async def test_refills_never_exceed_refill_concurrency() -> None:
    gate = Gate()
    async with open_fake_cluster(1, cpus=64, memory=256 * GiB, start_latency=gate) as cluster:
        async with open_pool(cluster, SPEC, min_size=6, refill_concurrency=2) as pool:
            await until(lambda: len(gate.waiting) == 2, "two refills in flight")
            await anyio.sleep(0.05)
            assert len(gate.waiting) == 2
            assert pool.statistics().in_flight == 2
            gate.opened.set()
            await pool.wait_ready()
            assert pool.statistics().refills == 6


async def test_the_target_shrinks_and_idle_extras_are_trimmed() -> None:
    async with open_fake_cluster(1, cpus=64, memory=256 * GiB, start_latency=0.05) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, max_size=4, shrink_after=0.3) as pool:
            await pool.wait_ready()
            taken: list[SandboxRecord] = []

            async def take() -> None:
                taken.append(await pool.acquire())

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(take)
            assert (pool.statistics().hits, pool.statistics().misses) == (1, 3)
            assert pool.statistics().target == 4
            await pool.wait_ready(4)
            await until(lambda: pool.statistics().target == 1, "the target to shrink")
            await until(lambda: pool.statistics().ready == 1, "idle extras to be trimmed")
            await until(lambda: not pool._stock.policy.doomed, "the trimmed extras to be deleted")
            stats = pool.statistics()
            assert (stats.size, stats.handed_out) == (1, 4)
            kept = pool._stock.policy.ready_ids()[0]
            pool_members = {r.sandbox_id for r in cluster.records() if r.state is RUNNING}
            assert pool_members == {kept} | {r.sandbox_id for r in taken}
            for record in taken:
                await pool.release(record.sandbox_id)


async def test_statistics_show_pools_beside_the_scheduler() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with (
            open_pool(cluster, SPEC, min_size=1, name="b") as b,
            open_pool(cluster, SandboxSpec(image="img:2", memory=GiB), name="a") as a,
        ):
            await a.wait_ready()
            await b.wait_ready()
            record = await b.acquire()
            await b.wait_ready()
            stats = cluster.statistics()
            assert [p.name for p in stats.pools] == ["a", "b"]
            assert stats.pool("b").hits == 1 and stats.pool("b").hit_rate == 1.0
            assert stats.pool("a").hit_rate == 0.0
            # The scheduler's figures are all still there.
            assert (stats.placed, stats.queue_depth, stats.starting) == (3, 0, 0)
            assert stats.hosts[0].host_id == "fake-0"
            assert stats.placements >= 3 and stats.rejections == 0
            assert stats.oldest_queued_since is None
            await b.release(record.sandbox_id)


def test_the_core_pool_is_a_record_pool_halted_through_its_attachment() -> None:
    assert "RecordPool" in rock_core.__all__ and "Pool" not in rock_core.__all__
    assert not hasattr(rock_core, "Pool")
    assert rock_sdk.Pool is not RecordPool
    assert callable(RecordPool.halt) and not hasattr(RecordPool, "_halt")
