"""Warm pools in virtual time: what refills may take (free start slots and room, after user
creates), failures and their backoff, `prepare` on every member."""

from __future__ import annotations

from functools import partial

import anyio
import anyio.lowlevel
import pytest

from rock_core import (
    BadRequest,
    ImageNotFound,
    SandboxFailed,
    SandboxRecord,
    SandboxSpec,
    open_pool,
)
from rock_core._pool import POOL_LABEL
from rock_core._protocol import CreateSandbox
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import DELETED, RUNNING, SPEC, Gate, GiB, assert_no_resources_in_use, until

pytestmark = pytest.mark.anyio


async def test_refill_failures_are_counted_reported_and_backed_off() -> None:
    bad = SandboxSpec(image="bad:1", memory=GiB)
    async with open_fake_cluster(1, fail_images={"bad:1"}) as cluster:
        async with open_pool(cluster, bad, min_size=2, name="bad") as pool:
            with pytest.raises(
                ImageNotFound,
                match=r"^pool 'bad' could not refill: image 'bad:1' is not on this host and "
                r"could not be pulled$",
            ) as info:
                await pool.wait_ready()
            assert isinstance(info.value.__cause__, ImageNotFound)
            # Backoff: both first refills failed at once (the wait is 0.5 s, then 1 s); after
            # 1 s two more fail (the wait is 4 s now), and nothing more is tried until then.
            await anyio.sleep(0.3)
            assert pool.statistics().failures == 2
            await anyio.sleep(0.5)
            assert pool.statistics().failures == 2
            await anyio.sleep(0.5)
            assert pool.statistics().failures == 4
            await anyio.sleep(3.5)
            stats = pool.statistics()
            assert stats.failures == 4
            assert stats.last_error == (
                "refill: ImageNotFound: image 'bad:1' is not on this host and could not be pulled"
            )
            with pytest.raises(ImageNotFound, match=r"^image 'bad:1' is not on this host"):
                await pool.acquire()  # a miss: the cold start's own error
            assert pool.statistics().misses == 1
        assert_no_resources_in_use(cluster)


async def test_refills_let_user_creates_go_first() -> None:
    gate = Gate()
    async with open_fake_cluster(
        1, cpus=16, memory=64 * GiB, max_starts=1, start_latency=gate
    ) as cluster:
        agent = cluster.agents["fake-0"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(cluster.create_sandbox, SPEC, sandbox_id="sb-user-1"))
            await until(lambda: gate.waiting == ["sb-user-1"], "the first user create")
            # The second waits in the queue for the host's only start slot.
            tg.start_soon(partial(cluster.create_sandbox, SPEC, sandbox_id="sb-user-2"))
            await until(lambda: cluster.statistics().queue_depth == 1, "a queued user create")
            async with open_pool(cluster, SPEC, min_size=2) as pool:
                await anyio.sleep(0.2)
                # The only start slot is busy and a user create waits: no refill started.
                assert pool.statistics().in_flight == 0
                gate.opened.set()
                await pool.wait_ready()
                creates = [m.sandbox_id for m in agent.received if isinstance(m, CreateSandbox)]
                assert creates[:2] == ["sb-user-1", "sb-user-2"]
                assert len(creates) == 4
        for sid in ("sb-user-1", "sb-user-2"):
            assert cluster.record(sid).state is RUNNING


async def test_prepare_runs_on_every_member_and_a_failing_one_is_discarded() -> None:
    prepared: list[str] = []
    fail = {"resets": False, "all": False}

    async def prepare(record: SandboxRecord) -> None:
        prepared.append(record.sandbox_id)
        restarted = any(t.reason == "start requested" for t in record.history)
        if fail["all"] or (fail["resets"] and restarted):
            raise BadRequest("prepare failed on purpose")

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, max_size=4, prepare=prepare) as pool:
            await pool.wait_ready()
            hit = await pool.acquire()
            cold = await pool.acquire()  # a miss: prepared as well
            assert {hit.sandbox_id, cold.sandbox_id} <= set(prepared)
            await pool.wait_ready(2)
            fail["resets"] = True
            await pool.release(hit.sandbox_id, reset=True)  # restarted, but prepare fails
            assert hit.state is DELETED
            stats = pool.statistics()
            assert (stats.resets, stats.failures) == (0, 1)
            assert stats.last_error == (
                f"reset of {hit.sandbox_id}: BadRequest: prepare failed on purpose"
            )
            await pool.release(cold.sandbox_id)
            fail["all"] = True  # now refills fail too: empty the pool, then miss
            while pool._stock.policy.ready:
                await pool.release((await pool.acquire()).sandbox_id)
            with pytest.raises(BadRequest, match=r"^prepare failed on purpose$"):
                await pool.acquire()
        assert_no_resources_in_use(cluster)
        assert all(r.state is not RUNNING for r in cluster.records())


async def test_refills_take_only_free_start_slots_and_never_queue() -> None:
    gate = Gate()
    async with open_fake_cluster(
        2, cpus=64, memory=256 * GiB, max_starts=1, start_latency=gate
    ) as cluster:
        async with open_pool(cluster, SPEC, min_size=6, refill_concurrency=4) as pool:
            await until(lambda: len(gate.waiting) == 2, "one refill per host")
            await anyio.sleep(0.1)
            # Two start slots in all: two refills, none waiting in the scheduler's queue.
            assert pool.statistics().in_flight == 2
            assert cluster.statistics().queue_depth == 0
            gate.opened.set()
            await pool.wait_ready()


async def test_room_is_counted_in_cpus_and_memory_too() -> None:
    async with open_fake_cluster(1, cpus=2, memory=64 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=6, refill_concurrency=8) as pool:
            await until(lambda: pool.statistics().ready == 4, "the host full: 4 x 0.5 cpu")
            await anyio.sleep(0.1)
            stats = pool.statistics()
            assert (stats.ready, stats.in_flight, stats.failures) == (4, 0, 0)
            assert cluster.statistics().queue_depth == 0


async def test_a_prepare_that_raises_a_foreign_error_fails_the_refill_not_the_cluster() -> None:
    async def prepare(record: SandboxRecord) -> None:
        raise ValueError("a bug in prepare")

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, name="buggy", prepare=prepare) as pool:
            with pytest.raises(
                SandboxFailed,
                match=r"^pool 'buggy' could not refill: prepare raised ValueError: a bug in "
                r"prepare$",
            ):
                await pool.wait_ready()
            assert pool.statistics().last_error == "refill: ValueError: a bug in prepare"
            with pytest.raises(ValueError, match=r"^a bug in prepare$"):
                await pool.acquire()  # a cold start: the caller gets its own error
            # The cluster still works.
            record = await cluster.create_sandbox(SPEC)
            assert record.state is RUNNING
        assert all(r.state is DELETED for r in cluster.records() if r.spec.labels.get(POOL_LABEL))


async def test_a_refill_held_back_by_the_cluster_starts_the_moment_a_start_slot_frees() -> None:
    arrived: dict[str, float] = {}
    user_started = anyio.Event()

    async def latency(sandbox_id: str) -> None:
        arrived[sandbox_id] = anyio.current_time()
        if sandbox_id == "sb-user":
            await user_started.wait()

    async with open_fake_cluster(
        1, cpus=16, memory=64 * GiB, max_starts=1, start_latency=latency
    ) as cluster:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(cluster.create_sandbox, SPEC, sandbox_id="sb-user"))
            await until(lambda: "sb-user" in arrived, "the user create to hold the only slot")
            async with open_pool(cluster, SPEC, min_size=1) as pool:
                await anyio.sleep(2.345)  # long past any poll: no refill while the slot is held
                assert (pool.statistics().in_flight, len(arrived)) == (0, 1)
                freed = anyio.current_time()
                user_started.set()
                await pool.wait_ready()
                # The cluster's capacity changed when the user's container started: the pool
                # heard it at once, with no poll in between.
                [refill] = [sid for sid in arrived if sid != "sb-user"]
                assert arrived[refill] == freed
