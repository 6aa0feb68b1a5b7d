"""A host whose agent said full (other programs use it): kept off, backed off, probed again.
Plain calls to the scheduler, with `now` passed in."""

from __future__ import annotations

import pytest

from rock_core._errors import NotFound
from rock_core._room import explain, room_for
from rock_core._scheduler import FULL_BACKOFF, FULL_BACKOFF_MAX, Place, Resources, Scheduler

from .scheduler_kit import GiB, cluster, host_stats, small


def test_a_refused_host_takes_no_placement_until_reopened_then_one_at_a_time() -> None:
    sched = cluster("a", "b")
    assert sched.submit("r1", small(), 0) == [Place("r1", "a")]
    assert sched.host_refused("a", "starts") == FULL_BACKOFF
    sched.start_failed("r1", 0)  # the refused create gives its room back: not to "a" again
    assert sched.submit("r1", small(), 0) == [Place("r1", "b")]
    sched.drain_host("b")
    assert sched.submit("r2", small(), 0) == []  # "a" is closed, "b" draining
    assert not sched.has_room(small())
    assert sched.startable(small()) == 0
    assert host_stats(sched, "a").full == "starts"
    assert sched.host_reopened("a") == [Place("r2", "a")]
    stats = host_stats(sched, "a")
    assert (stats.full, stats.probing) == ("", True)
    assert sched.submit("r3", small(), 0) == []  # probing: one start in flight at a time
    assert sched.started("r2", 0) == [Place("r3", "a")]  # a start went through: open again
    assert sched.submit("r4", small(), 0) == [Place("r4", "a")]
    assert sched.host_refusals("a") == 0


def test_the_backoff_doubles_with_each_refusal_in_a_row_up_to_its_most() -> None:
    sched = cluster("a")
    waits = [sched.host_refused("a", "sandboxes") for _ in range(8)]
    assert waits[:4] == [FULL_BACKOFF, 2 * FULL_BACKOFF, 4 * FULL_BACKOFF, 8 * FULL_BACKOFF]
    assert waits[-1] == FULL_BACKOFF_MAX and max(waits) == FULL_BACKOFF_MAX
    assert sched.host_refusals("a") == 8
    sched.host_reopened("a")
    sched.submit("r1", small(), 0)
    sched.started("r1", 0)
    assert sched.host_refusals("a") == 0
    assert sched.host_refused("a", "cpus") == FULL_BACKOFF


def test_a_start_that_succeeds_while_the_host_is_closed_keeps_it_closed() -> None:
    sched = cluster("a")
    sched.submit("r1", small(), 0)
    sched.submit("r2", small(), 0)
    sched.host_refused("a", "starts")  # r2's create was refused; r1's is still in flight
    sched.start_failed("r2", 0)
    sched.started("r1", 0)
    assert host_stats(sched, "a").full == "starts"
    assert sched.host_refusals("a") == 1  # the reopening waits for this count
    assert sched.submit("r2", small(), 0) == []
    assert sched.host_reopened("a") == [Place("r2", "a")]


def test_an_unknown_host_is_not_found_and_the_agents_start_cap_is_taken_when_smaller() -> None:
    sched = Scheduler(default_max_starts=8)
    with pytest.raises(NotFound, match=r"^no host 'x'$"):
        sched.host_refused("x", "starts")
    sched.add_host("a", Resources(4, 16 * GiB), host_max_starts=2)
    sched.add_host("b", Resources(4, 16 * GiB), host_max_starts=0)  # an older agent: none
    sched.add_host("c", Resources(4, 16 * GiB), host_max_starts=64)
    assert [h.max_starts for h in sched.statistics().hosts] == [2, 8, 8]


def test_the_wait_message_names_a_host_its_agent_said_full() -> None:
    sched = cluster("a")
    sched.host_refused("a", "sandboxes")
    text = explain(room_for(sched.statistics(), small()))
    assert "host a (4 cpus, 16 GiB): this cluster holds 0 sandboxes" in text
    assert "its agent says its sandboxes are full (other programs use it too)" in text
