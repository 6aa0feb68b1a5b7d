"""Warm pools and bulk create against fake agents: hand-outs, fallback, refill, limits,
release, close; `create_many`'s failures, concurrency, progress and cancellation."""

from __future__ import annotations

import io
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import anyio.lowlevel
import pytest

import rock_core
import rock_core._cleanup
import rock_sdk
from rock_core import (
    AlreadyExists,
    BadRequest,
    Cluster,
    ImageNotFound,
    NotFound,
    RecordPool,
    SandboxFailed,
    SandboxRecord,
    SandboxSpec,
    SandboxState,
    Scheduler,
    TimedOut,
    open_pool,
)
from rock_core._endpoint import Connection
from rock_core._pool import POOL_LABEL, default_pool_name, delete_quietly
from rock_core._protocol import CreateSandbox, RemoveSandbox, Reply, Request
from rock_core.testing import FakeAgent, FakeCluster, open_fake_cluster
from rock_sdk import CreateProgress, SandboxConfig
from rock_sdk._bulk import create_many

pytestmark = pytest.mark.anyio

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=0.5, memory=GiB)
RUNNING = SandboxState.RUNNING
DELETED = SandboxState.DELETED


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every test of this module under asyncio and under trio."""
    backend: str = request.param
    return backend


def assert_no_resources_in_use(cluster: Cluster) -> None:
    stats = cluster.statistics()
    assert (stats.placed, stats.starting, stats.queue_depth) == (0, 0, 0)


def live_on_agents(cluster: FakeCluster) -> set[str]:
    return {sid for agent in cluster.agents.values() for sid in agent.sandboxes}


async def until(condition: object, what: str, timeout: float = 5.0) -> None:
    """Wait (real time) until `condition()` is true."""
    assert callable(condition)
    with anyio.fail_after(timeout):
        while True:
            if condition():
                return
            await anyio.sleep(0.005)


class Gate:
    """A fake start latency that holds every create until it is opened."""

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.waiting: list[str] = []

    async def __call__(self, sandbox_id: str) -> None:
        self.waiting.append(sandbox_id)
        await self.opened.wait()


def before_removes(
    monkeypatch: pytest.MonkeyPatch, agent: FakeAgent, hook: Callable[[str], Awaitable[None]]
) -> None:
    """Await `hook(sandbox_id)` before the fake agent serves each remove: a hung or failing
    `docker rm` (a hook that raises a `RockError` makes the remove fail with it)."""
    handle = agent.handle

    async def hooked(conn: Connection, request: Request) -> Reply:
        if isinstance(request, RemoveSandbox):
            await hook(request.sandbox_id)
        return await handle(conn, request)

    monkeypatch.setattr(agent, "handle", hooked)


HANG = 5.0  # seconds a "hung" engine or prepare takes: far beyond any bound under test


class HungRemoves:
    """A remove hook that hangs, like a `docker rm` that does not return: until `let_go` is
    set, or for `HANG` seconds (then the engine recovers, so a test that waited for it fails
    on its timing instead of hanging for good inside a shielded scope).

    It holds the removes of `only` (default: every sandbox), `times` times per sandbox at most
    (default: always); `held` lists each remove it held, in order.
    """

    def __init__(self, *, only: set[str] | None = None, times: int | None = None) -> None:
        self.only = only
        self.times = times
        self.held: list[str] = []
        self.let_go = anyio.Event()

    async def __call__(self, sandbox_id: str) -> None:
        if self.only is not None and sandbox_id not in self.only:
            return
        if self.times is not None and self.held.count(sandbox_id) >= self.times:
            return
        self.held.append(sandbox_id)
        with anyio.move_on_after(HANG):
            await self.let_go.wait()


@pytest.fixture
def short_cleanups(monkeypatch: pytest.MonkeyPatch) -> float:
    """Shielded cleanups give up after 0.2 s instead of a minute."""
    monkeypatch.setattr(rock_core._cleanup, "CLEANUP_TIMEOUT", 0.2)
    return 0.2


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


async def test_max_size_bounds_what_the_pool_holds() -> None:
    async with open_fake_cluster(1, cpus=64, memory=256 * GiB, start_latency=0.01) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, max_size=3, refill_concurrency=8) as pool:
            largest = 0
            done = anyio.Event()

            async def watch() -> None:
                nonlocal largest
                while not done.is_set():
                    largest = max(largest, pool.statistics().size)
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                taken = []
                for _ in range(10):
                    taken.append(await pool.acquire())
                await pool.wait_ready(3)
                await anyio.sleep(0.05)
                done.set()
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


async def test_a_hanging_prepare_times_out_in_resets_misses_and_refills() -> None:
    hang = False

    async def prepare(record: SandboxRecord) -> None:
        if hang:
            await anyio.sleep(HANG)

    timed_out = r"prepare of sandbox sb-[0-9a-f]+ in pool 'slow' did not finish within 0.2 s"
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with open_pool(
            cluster, SPEC, min_size=1, max_size=3, name="slow", prepare=prepare, prepare_timeout=0.2
        ) as pool:
            await pool.wait_ready()
            held = await pool.acquire()
            await pool.wait_ready()
            hang = True
            began = time.monotonic()
            await pool.release(held.sandbox_id, reset=True)  # shielded, but not for ever
            assert time.monotonic() - began < 2
            assert held.state is DELETED
            stats = pool.statistics()
            assert (stats.resets, stats.failures) == (0, 1)
            assert stats.last_error == (
                f"reset of {held.sandbox_id}: TimedOut: prepare of sandbox {held.sandbox_id} "
                "in pool 'slow' did not finish within 0.2 s"
            )
            hit = await pool.acquire()
            began = time.monotonic()
            with pytest.raises(TimedOut, match=f"^{timed_out}$"):
                await pool.acquire()  # a miss: the cold start's prepare hangs
            assert time.monotonic() - began < 2
            with pytest.raises(TimedOut, match=f"^pool 'slow' could not refill: {timed_out}$"):
                await pool.wait_ready()
            await pool.release(hit.sandbox_id)
        assert all(r.state is DELETED for r in cluster.records())
        assert live_on_agents(cluster) == set()


async def test_release_gives_up_on_a_hung_delete(
    monkeypatch: pytest.MonkeyPatch, short_cleanups: float
) -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        async with open_pool(cluster, SPEC, min_size=2, name="p") as pool:
            await pool.wait_ready()
            held, other = await pool.acquire(), await pool.acquire()
            began = time.monotonic()
            with pytest.raises(
                TimedOut,
                match=rf"^pool 'p': deleting sandbox {held.sandbox_id} did not finish within "
                r"0.2 s; the cluster deletes it when it exits$",
            ):
                await pool.release(held.sandbox_id)
            assert time.monotonic() - began < 2
            # A cancelled caller (Ctrl-C) gets its cancellation, as soon.
            began = time.monotonic()
            with anyio.move_on_after(0.05) as cancelled:
                await pool.release(other.sandbox_id)
            assert cancelled.cancelled_caught
            assert time.monotonic() - began < 2
            assert hung.held == [held.sandbox_id, other.sandbox_id]
            assert held.state is other.state is SandboxState.DELETING
            assert pool.statistics().handed_out == 0
            hung.let_go.set()
    assert held.state is other.state is DELETED  # the cluster deleted them when it exited
    assert live_on_agents(cluster) == set()


async def test_a_cancelled_miss_is_not_held_up_by_a_hung_delete(
    monkeypatch: pytest.MonkeyPatch, short_cleanups: float
) -> None:
    async def prepare(record: SandboxRecord) -> None:
        await anyio.sleep_forever()

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        async with open_pool(cluster, SPEC, min_size=0, name="p", prepare=prepare) as pool:
            began = time.monotonic()
            with anyio.move_on_after(0.05) as cancelled:
                await pool.acquire()  # a miss, cancelled in its prepare
            assert cancelled.cancelled_caught
            assert time.monotonic() - began < 2
            assert len(hung.held) == 1  # the cold start's delete, given up after 0.2 s
            assert cluster.record(hung.held[0]).state is SandboxState.DELETING
            assert pool.statistics().handed_out == 0
            hung.let_go.set()
    assert live_on_agents(cluster) == set()


async def test_closing_is_not_held_up_by_a_hung_delete(
    monkeypatch: pytest.MonkeyPatch, short_cleanups: float
) -> None:
    preparing: list[SandboxRecord] = []

    async def prepare(record: SandboxRecord) -> None:
        preparing.append(record)
        await anyio.sleep_forever()

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        async with open_pool(cluster, SPEC, min_size=1, name="p", prepare=prepare) as pool:
            await until(lambda: preparing, "a refill in its prepare")
            began = time.monotonic()
        # The refill was cancelled and its sandbox deleted by `aclose`, which gave up after
        # 0.2 s; the halt never waited for a delete.
        assert time.monotonic() - began < 2
        assert pool.closed
        [refill] = preparing
        assert hung.held == [refill.sandbox_id]
        assert refill.state is SandboxState.DELETING
        hung.let_go.set()
    assert refill.state is DELETED  # the cluster deleted it when it exited
    assert live_on_agents(cluster) == set()


async def test_closing_deletes_members_whose_background_delete_was_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        agent = cluster.agents["fake-0"]
        async with open_pool(cluster, SPEC, min_size=2, name="p") as pool:
            await pool.wait_ready()
            dead = pool._stock.members[pool._stock.policy.ready_ids()[0]]
            hung = HungRemoves(only={dead.sandbox_id}, times=1)
            before_removes(monkeypatch, agent, hung)
            await cluster.stop_sandbox(dead.sandbox_id)  # found not running: discarded
            await until(lambda: hung.held == [dead.sandbox_id], "its background delete to hang")
            assert pool.statistics().discarded == 1
            assert dead.state is SandboxState.DELETING
            # Let the refill that replaces it finish: a create cancelled by the close would
            # leave a failed record (its container removed), racing the checks below.
            await pool.wait_ready()
        # Closing cancelled the background delete, then deleted the member itself.
        assert dead.state is DELETED
        assert dead.sandbox_id not in agent.sandboxes
        assert all(r.state is DELETED for r in cluster.records())
        assert agent.sandboxes == {}


async def test_delete_quietly_is_shielded_bounded_and_logs_each_failure(
    monkeypatch: pytest.MonkeyPatch, short_cleanups: float, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        ok, refused, hanging = [await cluster.create_sandbox(SPEC) for _ in range(3)]
        hung = HungRemoves(only={hanging.sandbox_id}, times=1)
        refuse = {refused.sandbox_id}

        async def hook(sandbox_id: str) -> None:
            if sandbox_id in refuse:
                refuse.discard(sandbox_id)
                raise SandboxFailed("the engine refused")
            await hung(sandbox_id)

        before_removes(monkeypatch, cluster.agents["fake-0"], hook)
        ids = [ok.sandbox_id, refused.sandbox_id, hanging.sandbox_id]
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="rock_core"), anyio.CancelScope() as scope:
            scope.cancel()  # shielded: a cancelled caller still deletes
            await delete_quietly(cluster, ids, who="test")
        assert time.monotonic() - began < 2
        assert ok.state is DELETED
        assert refused.state is SandboxState.FAILED
        assert hanging.state is SandboxState.DELETING
        assert [r.getMessage() for r in caplog.records if r.name == "rock_core"] == [
            f"test: could not delete sandbox {refused.sandbox_id}: the engine refused",
            "test: deletes did not finish within 0.2 s; the cluster deletes what is left when "
            "it exits",
        ]
    assert all(r.state is DELETED for r in cluster.records())
    assert live_on_agents(cluster) == set()


def test_the_core_pool_is_a_record_pool_halted_through_its_attachment() -> None:
    assert "RecordPool" in rock_core.__all__ and "Pool" not in rock_core.__all__
    assert not hasattr(rock_core, "Pool")
    assert rock_sdk.Pool is not RecordPool
    assert callable(RecordPool.halt) and not hasattr(RecordPool, "_halt")


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
            await anyio.sleep(0.3)
            stats = pool.statistics()
            # Backoff: a handful of attempts, not a tight loop.
            assert 1 <= stats.failures <= 4
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


async def test_bad_settings_are_refused() -> None:
    async with open_fake_cluster(1) as cluster:
        cases: list[tuple[dict[str, object], str]] = [
            ({"min_size": -1}, r"^min_size must be a whole number >= 0, got -1$"),
            ({"min_size": "1"}, r"^min_size must be a whole number >= 0, got '1'$"),
            ({"max_size": 1.5}, r"^max_size must be a whole number >= 1, got 1.5$"),
            (
                {"min_size": 3, "max_size": 2},
                r"^max_size must be >= min_size and >= 1, got min_size=3, max_size=2$",
            ),
            ({"min_size": 0, "max_size": 0}, r"^max_size must be a whole number >= 1, got 0$"),
            ({"refill_concurrency": 0}, r"^refill_concurrency must be a whole number >= 1, got 0$"),
            (
                {"shrink_after": 0},
                r"^shrink_after must be a positive, finite number of seconds, got 0$",
            ),
            (
                {"shrink_after": math.nan},
                r"^shrink_after must be a positive, finite number of seconds, got nan$",
            ),
            (
                {"prepare_timeout": -1.0},
                r"^prepare_timeout must be a positive, finite number of seconds, got -1.0$",
            ),
            ({"prepare": 5}, r"^prepare must be an async callable or None, got 5$"),
            ({"name": "bad name"}, r"^pool name 'bad name' must be 1-63 letters, digits"),
            ({"name": "-x"}, r"^pool name '-x' must be 1-63 letters"),
        ]
        for kwargs, message in cases:
            with pytest.raises(BadRequest, match=message):
                async with open_pool(cluster, SPEC, **kwargs):  # type: ignore[arg-type]
                    pass
        labelled = SandboxSpec(image="img:1", memory=GiB, labels={POOL_LABEL: "other"})
        with pytest.raises(
            BadRequest, match=r"^the spec's label rock.pool='other' differs from the pool's name"
        ):
            async with open_pool(cluster, labelled, name="mine"):
                pass
        async with open_pool(cluster, SPEC, name="one") as one:
            with pytest.raises(BadRequest, match=r"^count must be a whole number >= 0, got '2'$"):
                await one.wait_ready("2")  # type: ignore[arg-type]
            with pytest.raises(
                AlreadyExists, match=r"^a pool named 'one' is already open in this cluster$"
            ):
                async with open_pool(cluster, SPEC, name="one"):
                    pass
        assert cluster.statistics().pools == ()
    closed = Cluster("nobody", Scheduler())
    with pytest.raises(BadRequest, match=r"^pools need an open cluster"):
        async with open_pool(closed, SPEC):
            pass


def test_default_names_are_stable_and_label_safe() -> None:
    name = default_pool_name(SandboxSpec(image="registry:5000/team/py:3.11", memory=GiB))
    assert name.startswith("registry-5000-team-py-3.11-")
    assert name == default_pool_name(SandboxSpec(image="registry:5000/team/py:3.11", memory=GiB))
    assert name != default_pool_name(SandboxSpec(image="registry:5000/team/py:3.11", cpus=2))


# ------------------------------------------------------------------ bulk create (rock_sdk)

OK = SandboxConfig(image="img:1", cpus=0.5, memory="1g")
BAD = SandboxConfig(image="bad:1", cpus=0.5, memory="1g")


async def test_create_many_starts_the_rest_and_reports_each_failure() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, fail_images={"bad:1"}) as cluster:
        seen: list[CreateProgress] = []
        result = await create_many(cluster, [OK, BAD, OK, BAD, OK], on_progress=seen.append)
        assert [sb.state for sb in result.sandboxes] == [RUNNING] * 3
        assert [f.index for f in result.failures] == [1, 3]
        for failure in result.failures:
            assert isinstance(failure.error, ImageNotFound)
            assert str(failure) == (
                f"#{failure.index} ({failure.sandbox_id}): ImageNotFound: image 'bad:1' is not "
                "on this host and could not be pulled"
            )
            assert cluster.record(failure.sandbox_id).state is SandboxState.FAILED
        assert not result.ok and result.elapsed > 0
        assert [p.done for p in seen] == [1, 2, 3, 4, 5]
        assert (seen[-1].started, seen[-1].failed, seen[-1].total) == (3, 2, 5)
        with pytest.raises(ImageNotFound) as info:
            result.raise_on_failure()
        assert info.value.__notes__[:3] == [
            "2 of 5 sandboxes failed to start:",
            f"  {result.failures[0]}",
            f"  {result.failures[1]}",
        ]
        ok = await create_many(cluster, OK, 2)
        assert ok.ok and len(ok.sandboxes) == 2
        ok.raise_on_failure()  # nothing to raise


async def test_create_many_with_check_deletes_what_started() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, fail_images={"bad:1"}) as cluster:
        with pytest.raises(ImageNotFound, match=r"^image 'bad:1' is not on this host") as info:
            await create_many(cluster, [OK, OK, BAD], check=True)
        assert info.value.__notes__[0] == "1 of 3 sandboxes failed to start:"
        assert live_on_agents(cluster) == set()
        assert_no_resources_in_use(cluster)


async def test_create_many_gives_up_on_hung_deletes(
    monkeypatch: pytest.MonkeyPatch, short_cleanups: float
) -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, fail_images={"bad:1"}) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        began = time.monotonic()
        with pytest.raises(ImageNotFound, match=r"^image 'bad:1' is not on this host"):
            await create_many(cluster, [OK, OK, BAD], check=True)
        assert time.monotonic() - began < 2  # the deletes gave up after 0.2 s
        assert len(hung.held) == 2
        hung.let_go.set()
    assert live_on_agents(cluster) == set()


async def test_create_many_bounds_its_concurrency() -> None:
    gate = Gate()
    async with open_fake_cluster(2, cpus=64, memory=256 * GiB, start_latency=gate) as cluster:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(create_many, cluster, OK, 10, concurrency=3))
            await until(lambda: len(gate.waiting) == 3, "three creates in flight")
            await anyio.sleep(0.05)
            assert len(gate.waiting) == 3
            gate.opened.set()
        assert len(live_on_agents(cluster)) == 10


async def test_create_many_fills_every_hosts_start_slots_by_default() -> None:
    gate = Gate()
    async with open_fake_cluster(
        2, cpus=64, memory=256 * GiB, max_starts=3, start_latency=gate
    ) as cluster:
        async with anyio.create_task_group() as tg:
            tg.start_soon(create_many, cluster, OK, 20)
            await until(lambda: len(gate.waiting) == 6, "3 starts on each of 2 hosts")
            await anyio.sleep(0.05)
            assert len(gate.waiting) == 6
            assert cluster.statistics().queue_depth == 0  # no more creates than start slots
            gate.opened.set()


async def test_cancelling_create_many_deletes_what_it_started() -> None:
    started = 0

    async def latency(sandbox_id: str) -> None:
        nonlocal started
        started += 1
        if started > 2:
            await anyio.sleep_forever()

    async with open_fake_cluster(1, cpus=64, memory=256 * GiB, start_latency=latency) as cluster:
        with anyio.move_on_after(0.3):
            await create_many(cluster, OK, 6, concurrency=6)
        assert live_on_agents(cluster) == set()
        assert all(r.state is not RUNNING for r in cluster.records())
        assert_no_resources_in_use(cluster)


async def test_create_many_with_ids_is_idempotent() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        first = await create_many(cluster, OK, 3, sandbox_ids=["a-1", "a-2", "a-3"])
        again = await create_many(cluster, OK, 3, sandbox_ids=["a-1", "a-2", "a-3"])
        assert [sb.sandbox_id for sb in again.sandboxes] == ["a-1", "a-2", "a-3"]
        assert [sb.sandbox_id for sb in first.sandboxes] == ["a-1", "a-2", "a-3"]
        assert live_on_agents(cluster) == {"a-1", "a-2", "a-3"}
        one = await create_many(cluster, SandboxConfig(image="img:1", sandbox_id="only"), 1)
        assert [sb.sandbox_id for sb in one.sandboxes] == ["only"]


async def test_create_many_progress_line() -> None:
    stream = io.StringIO()
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        await create_many(cluster, OK, 20, progress=stream)
    lines = stream.getvalue().splitlines()
    # Not a terminal: a line when the first create ends, then one per tenth of the work.
    assert [line.split()[1] for line in lines] == [f"{d}/20" for d in (1, *range(2, 21, 2))]
    assert re.fullmatch(r"create_many: 1/20 sandboxes started \(\d+\.\d/s, \d+\.\d s\)", lines[0])

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        await create_many(cluster, OK, 3, progress=terminal)
    shown = terminal.getvalue()
    # On a terminal: one line, rewritten in place, ended when all are done.
    assert shown.count("\r") == 3 and shown.count("\n") == 1 and shown.endswith("\n")
    assert shown.split("\r")[-1].startswith("create_many: 3/3 sandboxes started (")


async def test_create_many_refuses_bad_arguments_before_starting_anything() -> None:
    async with open_fake_cluster(1) as cluster:
        cases: list[tuple[dict[str, object], str]] = [
            ({"config": OK, "n": -1}, r"^n must be a whole number >= 0, got -1$"),
            ({"config": OK}, r"^n must be a whole number >= 0, got None$"),
            ({"config": OK, "n": "3"}, r"^n must be a whole number >= 0, got '3'$"),
            ({"config": OK, "n": True}, r"^n must be a whole number >= 0, got True$"),
            (
                {"config": "x", "n": 1},
                r"^config must be a list such as \[SandboxConfig\(...\), ...\], got 'x'$",
            ),
            (
                {"config": [OK, "x"]},
                r"^config must be a SandboxConfig or a list of them, got 'x' in it$",
            ),
            (
                {"config": OK, "n": 1, "on_progress": 5},
                r"^on_progress must be a callable taking a CreateProgress, or None, got 5$",
            ),
            (
                {"config": OK, "n": 1, "progress": "yes"},
                r"^progress must be True, False or a text stream, got 'yes'$",
            ),
            ({"config": OK, "n": 1, "check": "no"}, r"^check must be True or False, got 'no'$"),
            (
                {"config": OK, "n": 3, "sandbox_ids": "abc"},
                r"^sandbox_ids must be a list such as \['sb-1', 'sb-2'\], got 'abc'$",
            ),
            ({"config": [OK, OK], "n": 3}, r"^n=3 but 2 configs were given$"),
            (
                {"config": OK, "n": 2, "sandbox_ids": ["x"]},
                r"^sandbox_ids has 1 ids for 2 sandboxes$",
            ),
            (
                {"config": OK, "n": 2, "sandbox_ids": ["x", "x"]},
                r"^sandbox_ids has duplicates: each sandbox needs its own id$",
            ),
            (
                {"config": SandboxConfig(image="img:1", sandbox_id="x"), "n": 2},
                r"^config.sandbox_id names one sandbox, not several: pass sandbox_ids=\[...\]$",
            ),
            (
                {
                    "config": SandboxConfig(image="img:1", sandbox_id="x"),
                    "n": 1,
                    "sandbox_ids": ["y"],
                },
                r"^give the ids either as config.sandbox_id or as sandbox_ids, not both$",
            ),
            (
                {"config": OK, "n": 2, "concurrency": 0},
                r"^concurrency must be a whole number >= 1, got 0$",
            ),
            (
                {"config": OK, "n": 2, "concurrency": "2"},
                r"^concurrency must be a whole number >= 1, got '2'$",
            ),
            (
                {"config": [OK, SandboxConfig(image="img:1", cpus=0)]},
                r"^invalid sandbox config: cpus 0: Expected `float` >= 0.01$",
            ),
        ]
        for kwargs, message in cases:
            with pytest.raises(BadRequest, match=message):
                await create_many(cluster, **kwargs)  # type: ignore[arg-type]
        assert cluster.records() == []
        empty = await create_many(cluster, OK, 0)
        assert (empty.sandboxes, empty.failures) == ([], [])
