"""`Scheduler.startable`: how many creates of a demand could start now, as plain calls."""

from __future__ import annotations

from rock_core._scheduler import Demand, Place, Resources, Scheduler

from .scheduler_kit import GiB, small


def hosts(*sizes: tuple[str, float, int], max_starts: int = 8, sandboxes: int = 0) -> Scheduler:
    sched = Scheduler()
    for host_id, cpus, memory in sizes:
        sched.add_host(host_id, Resources(cpus, memory, sandboxes), max_starts=max_starts)
    return sched


def test_without_hosts_nothing_can_start() -> None:
    assert Scheduler().startable(small()) == 0


def test_start_slots_bound_each_host() -> None:
    sched = hosts(("a", 64, 256 * GiB), ("b", 64, 256 * GiB), max_starts=3)
    assert sched.startable(small()) == 6
    sched.submit("r1", small(), now=0)  # takes a start slot on one host
    assert sched.startable(small()) == 5
    sched.started("r1", now=1)  # the slot is free again; its cpus and memory stay held
    assert sched.startable(small()) == 6


def test_cpus_and_memory_bound_each_host_in_units_of_the_demand() -> None:
    sched = hosts(("a", 2, 64 * GiB), ("b", 16, 3 * GiB))
    assert sched.startable(Demand(0.5, GiB)) == 4 + 3  # a: 4 by cpus; b: 3 by memory
    assert sched.startable(Demand(0.75, 0)) == 2 + 8  # memory not asked: cpus and slots
    assert sched.startable(Demand(0, 2 * GiB)) == 8 + 1  # cpus not asked: memory and slots
    assert sched.startable(Demand(0, 0)) == 16  # only the start slots bound it
    assert sched.startable(Demand(4, GiB)) == 0 + 3  # too big for a, b has room for 3


def test_what_is_placed_counts_until_released() -> None:
    sched = hosts(("a", 2, 64 * GiB))
    for i in range(3):
        sched.submit(f"r{i}", Demand(0.5, GiB), now=i)
        sched.started(f"r{i}", now=i)
    assert sched.startable(Demand(0.5, GiB)) == 1
    sched.release("r0", now=5)
    assert sched.startable(Demand(0.5, GiB)) == 2
    sched.adopt("old", "a", Demand(2, GiB))  # an adopted sandbox over-commits: none, not < 0
    assert sched.startable(Demand(0.5, GiB)) == 0


def test_sandbox_limits_bound_each_host() -> None:
    sched = hosts(("a", 64, 256 * GiB), sandboxes=2)
    assert sched.startable(small()) == 2
    sched.submit("r1", small(), now=0)
    sched.started("r1", now=0)
    assert sched.startable(small()) == 1


def test_draining_hosts_count_for_nothing() -> None:
    sched = hosts(("a", 8, 32 * GiB), ("b", 8, 32 * GiB), max_starts=2)
    sched.drain_host("a")
    assert sched.startable(small()) == 2
    sched.drain_host("b")
    assert sched.startable(small()) == 0
    sched.drain_host("a", False)
    assert sched.startable(small()) == 2


def test_nothing_is_startable_while_anyone_waits_in_the_queue() -> None:
    sched = hosts(("a", 1, 64 * GiB), ("b", 8, 64 * GiB), max_starts=1)
    assert sched.startable(Demand(0, 0)) == 2
    assert sched.submit("small", small(), now=0) == [Place("small", "b")]  # b: lower share
    assert sched.submit("big", Demand(4, GiB), now=1) == []  # only b could hold it: it waits
    assert sched.is_queued("big")
    # a's start slot is free and a has room for another small one, but someone waits.
    assert sched.startable(small()) == 0
    sched.cancel("big")
    assert sched.startable(small()) == 1
    assert sched.submit("big", Demand(4, GiB), now=2) == []
    assert sched.started("small", now=3) == [Place("big", "b")]  # placed: nobody waits now
    assert sched.startable(small()) == 1  # a's slot; b's is big's until it starts
