"""Warm pools in virtual time: cleanups are shielded and bounded, so a hung engine or
`prepare` never hangs a release, a cancel or a close (the bounds are exact in virtual time)."""

from __future__ import annotations

import logging

import anyio
import anyio.lowlevel
import pytest

from rock_core import (
    SandboxFailed,
    SandboxRecord,
    SandboxState,
    TimedOut,
    open_pool,
)
from rock_core._pool import delete_quietly
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import (
    DELETED,
    HANG,
    SPEC,
    GiB,
    HungRemoves,
    before_removes,
    live_on_agents,
    short_cleanups,
    until,
)

pytestmark = pytest.mark.anyio


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
            began = anyio.current_time()
            await pool.release(held.sandbox_id, reset=True)  # shielded, but not for ever
            assert anyio.current_time() - began == pytest.approx(0.2)
            assert held.state is DELETED
            stats = pool.statistics()
            assert (stats.resets, stats.failures) == (0, 1)
            assert stats.last_error == (
                f"reset of {held.sandbox_id}: TimedOut: prepare of sandbox {held.sandbox_id} "
                "in pool 'slow' did not finish within 0.2 s"
            )
            hit = await pool.acquire()
            began = anyio.current_time()
            with pytest.raises(TimedOut, match=f"^{timed_out}$"):
                await pool.acquire()  # a miss: the cold start's prepare hangs
            assert anyio.current_time() - began == pytest.approx(0.2)
            with pytest.raises(TimedOut, match=f"^pool 'slow' could not refill: {timed_out}$"):
                await pool.wait_ready()
            await pool.release(hit.sandbox_id)
        assert all(r.state is DELETED for r in cluster.records())
        assert live_on_agents(cluster) == set()


async def test_release_gives_up_on_a_hung_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    short_cleanups(monkeypatch)
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        async with open_pool(cluster, SPEC, min_size=2, name="p") as pool:
            await pool.wait_ready()
            held, other = await pool.acquire(), await pool.acquire()
            began = anyio.current_time()
            with pytest.raises(
                TimedOut,
                match=rf"^pool 'p': deleting sandbox {held.sandbox_id} did not finish within "
                r"0.2 s; the cluster deletes it when it exits$",
            ):
                await pool.release(held.sandbox_id)
            assert anyio.current_time() - began == pytest.approx(0.2)
            # A cancelled caller (Ctrl-C) gets its cancellation, as soon.
            began = anyio.current_time()
            with anyio.move_on_after(0.05) as cancelled:
                await pool.release(other.sandbox_id)
            assert cancelled.cancelled_caught
            assert anyio.current_time() - began == pytest.approx(0.2)  # when the bound ends
            assert hung.held == [held.sandbox_id, other.sandbox_id]
            assert held.state is other.state is SandboxState.DELETING
            assert pool.statistics().handed_out == 0
            hung.let_go.set()
    assert held.state is other.state is DELETED  # the cluster deleted them when it exited
    assert live_on_agents(cluster) == set()


async def test_a_cancelled_miss_is_not_held_up_by_a_hung_delete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short_cleanups(monkeypatch)

    async def prepare(record: SandboxRecord) -> None:
        await anyio.sleep_forever()

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        async with open_pool(cluster, SPEC, min_size=0, name="p", prepare=prepare) as pool:
            began = anyio.current_time()
            with anyio.move_on_after(0.05) as cancelled:
                await pool.acquire()  # a miss, cancelled in its prepare
            assert cancelled.cancelled_caught
            assert anyio.current_time() - began == pytest.approx(0.05 + 0.2)
            assert len(hung.held) == 1  # the cold start's delete, given up after 0.2 s
            assert cluster.record(hung.held[0]).state is SandboxState.DELETING
            assert pool.statistics().handed_out == 0
            hung.let_go.set()
    assert live_on_agents(cluster) == set()


async def test_closing_is_not_held_up_by_a_hung_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    short_cleanups(monkeypatch)
    preparing: list[SandboxRecord] = []

    async def prepare(record: SandboxRecord) -> None:
        preparing.append(record)
        await anyio.sleep_forever()

    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        async with open_pool(cluster, SPEC, min_size=1, name="p", prepare=prepare) as pool:
            await until(lambda: preparing, "a refill in its prepare")
            began = anyio.current_time()
        # The refill was cancelled and its sandbox deleted by `aclose`, which gave up after
        # 0.2 s; the halt never waited for a delete.
        assert anyio.current_time() - began == pytest.approx(0.2)
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
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    short_cleanups(monkeypatch)
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
        began = anyio.current_time()
        with caplog.at_level(logging.WARNING, logger="rock_core"), anyio.CancelScope() as scope:
            scope.cancel()  # shielded: a cancelled caller still deletes
            await delete_quietly(cluster, ids, who="test")
        assert anyio.current_time() - began == pytest.approx(0.2)
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
