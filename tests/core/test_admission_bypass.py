"""A create held back by the bypass rule does not wait its turn past its queue timeout.

When the oldest waiting request fits no host and younger ones passed it `max_bypass` times,
nothing younger is placed until it is: a younger create then waits for room, not for its turn,
and ends in `QueueTimedOut` (the oldest may wait for a host that never comes).
"""

from __future__ import annotations

import logging

import anyio
import pytest

from rock_core import QueueTimedOut, SandboxSpec, SandboxState
from rock_core._scheduler import Demand, Place, Resources, Scheduler
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

GiB = 1 << 30
SMALL = SandboxSpec(image="img:1", cpus=1, memory=GiB)
BIG = SandboxSpec(image="img:1", cpus=4, memory=GiB)


def test_has_room_for_a_request_counts_the_bypass_rule() -> None:
    sched = Scheduler(max_bypass=2)
    sched.add_host("a", Resources(4, 8 * GiB))
    sched.submit("hold", Demand(1, GiB), now=0)
    assert sched.submit("big", Demand(4, GiB), now=1) == []
    for i in range(2):  # two younger ones pass it, and go
        assert len(sched.submit(f"s{i}", Demand(1, GiB), now=2)) == 1
        sched.started(f"s{i}", now=2)
        sched.release(f"s{i}", now=2)
    assert sched.submit("late", Demand(1, GiB), now=3) == []
    assert sched.has_room(Demand(1, GiB))  # a host has room...
    assert not sched.has_room(Demand(1, GiB), "late")  # ...but not for this request
    assert not sched.has_room(Demand(4, GiB), "big")
    assert sched.release("hold", now=5) == [Place("big", "a")]  # the oldest goes first
    assert not sched.has_room(Demand(1, GiB), "late")  # now the oldest, and no room


def test_only_the_oldest_holds_back_and_only_when_it_has_no_room() -> None:
    sched = Scheduler(max_bypass=0, default_max_starts=1)  # strict FIFO
    sched.add_host("a", Resources(4, 8 * GiB))
    sched.submit("r0", Demand(1, GiB), now=0)  # takes the only start slot
    sched.submit("r1", Demand(2, GiB), now=1)  # oldest waiting: has room, waits a slot
    sched.submit("r2", Demand(1, GiB), now=2)
    assert sched.has_room(Demand(2, GiB), "r1")
    assert sched.has_room(Demand(1, GiB), "r2")  # behind r1, which will be placed
    assert sched.has_room(Demand(1, GiB), "gone")  # not queued: the demand alone decides


@pytest.mark.anyio
async def test_a_create_behind_a_request_passed_max_bypass_times_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_fake_cluster(1, cpus=4, memory=64 * GiB) as cluster:
        await cluster.create_sandbox(SMALL, sandbox_id="hold")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: cluster.create_sandbox(BIG, sandbox_id="big", queue_timeout=None))
            await anyio.wait_all_tasks_blocked()
            for i in range(32):  # the scheduler's default max_bypass
                await cluster.create_sandbox(SMALL, sandbox_id=f"s{i}", queue_timeout=0.05)
                await cluster.delete_sandbox(f"s{i}")
            caplog.set_level(logging.DEBUG, logger="rock_core")
            with pytest.raises(QueueTimedOut) as info, anyio.fail_after(10):
                await cluster.create_sandbox(SMALL, sandbox_id="late", queue_timeout=0.05)
            assert str(info.value).startswith(
                "sandbox late was not placed within 0.05 s: a host has room for it (1 cpu and"
                " 1 GiB), but an older request that fits no host now was passed by younger ones"
                " as often as the scheduler allows (max_bypass), so nothing younger is placed"
                " until it is; a host has room; it waits for a start slot or for older requests"
                " (host fake-0 (4 cpus, 64 GiB): this cluster holds 1 sandbox (1 cpu, 1 GiB),"
            )
            assert str(info.value).endswith(". (queue_timeout=None waits without a limit.)")
            assert (info.value.details["queue_timeout"], cluster.record("big").state) == (
                0.05,
                SandboxState.PENDING,
            )
            waits = [r for r in caplog.records if "sandbox late waits" in r.getMessage()]
            assert [(r.levelno, r.getMessage().split(":")[0]) for r in waits] == [
                (logging.WARNING, "sandbox late waits for older requests")
            ]
            await cluster.delete_sandbox("hold")  # the oldest fits: everything moves again
        assert cluster.record("big").state is SandboxState.RUNNING
