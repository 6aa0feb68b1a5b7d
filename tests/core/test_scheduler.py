"""The sans-IO scheduler: admission, queueing, bypass, start caps, release."""

from __future__ import annotations

import math

import pytest

from rock_core._errors import AlreadyExists, BadRequest, CapacityError, NotFound
from rock_core._scheduler import (
    Demand,
    Place,
    Resources,
    Scheduler,
)

from .scheduler_kit import GiB, cluster, host_stats, small

# --------------------------------------------------------------------------- admission


def test_demand_larger_than_every_host_is_rejected_at_once_naming_the_largest() -> None:
    sched = Scheduler()
    sched.add_host("a", Resources(4, 8 * GiB))
    sched.add_host("b", Resources(2, 32 * GiB))
    with pytest.raises(CapacityError) as info:
        sched.submit("r1", Demand(8, GiB), now=0)
    assert str(info.value) == (
        "no host can ever hold request 'r1' (cpus=8, memory=1073741824):"
        " the most cpus is 4 on 'a', the most memory is 34359738368 on 'b'"
    )
    assert info.value.details == {"request_id": "r1"}
    # Fits each dimension somewhere, but never both on one host.
    with pytest.raises(CapacityError, match="request 'r2' "):
        sched.submit("r2", Demand(3, 16 * GiB), now=0)
    stats = sched.statistics()
    assert (stats.rejections, stats.queue_depth, stats.placed) == (2, 0, 0)


def test_rejection_names_a_single_largest_host() -> None:
    sched = Scheduler()
    sched.add_host("big", Resources(8, 16 * GiB))
    sched.add_host("tiny", Resources(1, GiB))
    with pytest.raises(CapacityError) as info:
        sched.submit("r1", Demand(0.5, 20 * GiB), now=0)
    assert str(info.value) == (
        "no host can ever hold request 'r1' (cpus=0.5, memory=21474836480):"
        " the largest host is 'big' (cpus=8, memory=17179869184)"
    )


def test_without_hosts_every_demand_is_rejected() -> None:
    with pytest.raises(CapacityError) as info:
        Scheduler().submit("r1", Demand(0, 0), now=0)
    assert str(info.value) == (
        "no host can ever hold request 'r1' (cpus=0, memory=0): there are no hosts"
    )


def test_admission_counts_draining_hosts() -> None:
    sched = cluster("a", "b", cpus=2)
    sched.add_host("big", Resources(16, 16 * GiB))
    sched.drain_host("big")
    assert sched.submit("r1", Demand(8, GiB), now=0) == []
    assert sched.statistics().queue_depth == 1
    assert sched.drain_host("big", draining=False) == [Place("r1", "big")]


@pytest.mark.parametrize(
    "demand", [Demand(-1, GiB), Demand(1, -1), Demand(math.nan, GiB), Demand(math.inf, GiB)]
)
def test_invalid_demand_is_a_bad_request(demand: Demand) -> None:
    with pytest.raises(BadRequest) as info:
        cluster("a").submit("r1", demand, now=0)
    assert str(info.value) == f"request 'r1' has an invalid demand: {demand}"


def test_duplicate_request_id_is_rejected_whether_queued_or_placed() -> None:
    sched = cluster("a", cpus=1)
    sched.submit("r1", small(), now=0)
    sched.submit("r2", small(), now=0)
    with pytest.raises(AlreadyExists) as info:
        sched.submit("r1", small(), now=1)
    assert str(info.value) == "request 'r1' is already placed"
    assert isinstance(info.value, BadRequest)
    with pytest.raises(AlreadyExists, match=r"^request 'r2' is already queued$"):
        sched.submit("r2", small(), now=1)
    stats = sched.statistics()
    assert (stats.placed, stats.queue_depth, stats.placements) == (1, 1, 1)


def test_a_released_request_id_may_be_used_again() -> None:
    sched = cluster("a")
    sched.submit("r1", small(), now=0)
    sched.release("r1", now=1)
    assert sched.submit("r1", small(), now=2) == [Place("r1", "a")]


# ------------------------------------------------------------------------------- queue


def test_requests_queue_when_full_and_are_placed_on_release() -> None:
    sched = cluster("a", cpus=2)
    assert sched.submit("r1", small(), now=0) == [Place("r1", "a")]
    assert sched.submit("r2", small(), now=1) == [Place("r2", "a")]
    assert sched.submit("r3", small(), now=2) == []
    assert sched.submit("r4", small(), now=3) == []
    stats = sched.statistics()
    assert (stats.queue_depth, stats.placed, stats.oldest_queued_since) == (2, 2, 2.0)
    assert sched.started("r1", now=4) == []  # a start slot is not room
    assert sched.release("r1", now=5) == [Place("r3", "a")]
    assert sched.start_failed("r2", now=6) == [Place("r4", "a")]
    stats = sched.statistics()
    assert (stats.queue_depth, stats.placed, stats.oldest_queued_since) == (0, 2, None)


def test_queue_full_rejects_with_capacity_error() -> None:
    sched = cluster("a", cpus=1, max_queue=1)
    sched.submit("r1", small(), now=0)
    sched.submit("r2", small(), now=0)
    with pytest.raises(CapacityError) as info:
        sched.submit("r3", small(), now=0)
    assert str(info.value) == "queue full (max_queue=1): request 'r3' rejected"
    stats = sched.statistics()
    assert (stats.queue_depth, stats.rejections) == (1, 1)
    # The rejected request left no trace: its id is free and the queue still works.
    with pytest.raises(NotFound):
        sched.cancel("r3")
    assert sched.release("r1", now=1) == [Place("r2", "a")]


def test_a_full_queue_still_takes_a_request_that_fits_now() -> None:
    sched = cluster("a", cpus=4, max_queue=1)
    sched.submit("r1", Demand(3, GiB), now=0)
    sched.submit("big", Demand(4, GiB), now=0)  # waits: only 1 cpu free
    assert sched.submit("r2", small(), now=0) == [Place("r2", "a")]


def test_zero_max_queue_means_place_now_or_reject() -> None:
    sched = cluster("a", cpus=1, max_queue=0)
    assert sched.submit("r1", small(), now=0) == [Place("r1", "a")]
    with pytest.raises(CapacityError, match=r"^queue full \(max_queue=0\)"):
        sched.submit("r2", small(), now=0)


def test_later_requests_pass_a_blocked_head_at_most_max_bypass_times() -> None:
    sched = cluster("a", cpus=4, max_bypass=2)
    sched.submit("r0", small(), now=0)
    assert sched.submit("big", Demand(4, GiB), now=1) == []
    assert sched.submit("s1", small(), now=2) == [Place("s1", "a")]
    assert sched.submit("s2", small(), now=3) == [Place("s2", "a")]
    assert sched.submit("s3", small(), now=4) == []  # fits, but the head was passed twice
    assert sched.release("r0", now=5) == []
    assert sched.release("s1", now=6) == []
    assert sched.release("s2", now=7) == [Place("big", "a")]
    assert sched.release("big", now=8) == [Place("s3", "a")]


def test_zero_max_bypass_is_strict_fifo() -> None:
    sched = cluster("a", cpus=4, max_bypass=0)
    sched.submit("r0", small(), now=0)
    sched.submit("big", Demand(4, GiB), now=1)
    assert sched.submit("s1", small(), now=2) == []
    assert sched.release("r0", now=3) == [Place("big", "a")]


def test_same_shaped_requests_keep_their_order() -> None:
    sched = cluster("a", cpus=2)
    sched.submit("r0", Demand(2, GiB), now=0)
    for i in range(1, 4):
        sched.submit(f"r{i}", small(), now=i)
    assert sched.release("r0", now=9) == [Place("r1", "a"), Place("r2", "a")]


def test_one_event_can_place_several_shapes_in_age_order() -> None:
    sched = cluster("a", cpus=4)
    sched.submit("r0", Demand(4, GiB), now=0)
    sched.submit("two", Demand(2, GiB), now=1)
    sched.submit("one", small(), now=2)
    sched.submit("half", Demand(0.5, GiB), now=3)
    assert sched.release("r0", now=4) == [
        Place("two", "a"),
        Place("one", "a"),
        Place("half", "a"),
    ]


def test_cancel_removes_a_queued_request_and_unblocks_those_behind() -> None:
    sched = cluster("a", cpus=2, max_bypass=0)
    sched.submit("r0", small(), now=0)
    sched.submit("big", Demand(2, GiB), now=1)
    sched.submit("s1", small(), now=2)
    assert sched.cancel("big") == [Place("s1", "a")]
    assert sched.statistics().queue_depth == 0
    with pytest.raises(NotFound) as info:
        sched.cancel("big")
    assert str(info.value) == (
        "request 'big' cannot be cancelled: no such request (never submitted, or already gone)"
    )


def test_cancel_of_a_placed_request_says_to_release_it() -> None:
    sched = cluster("a")
    sched.submit("r1", small(), now=0)
    with pytest.raises(BadRequest) as info:
        sched.cancel("r1")
    assert str(info.value) == (
        "request 'r1' cannot be cancelled: it is placed on host 'a' (release it instead)"
    )
    assert sched.statistics().placed == 1


# --------------------------------------------------------------------------- start cap


def test_start_cap_holds_the_ninth_start_until_one_has_started() -> None:
    sched = cluster("a", cpus=64)
    placed = [a for i in range(9) for a in sched.submit(f"r{i}", small(), now=i)]
    assert placed == [Place(f"r{i}", "a") for i in range(8)]
    stats = sched.statistics()
    assert (stats.queue_depth, stats.starting) == (1, 8)
    assert sched.started("r3", now=10) == [Place("r8", "a")]
    assert host_stats(sched, "a").starting == 8


def test_start_cap_is_per_host_and_configurable() -> None:
    sched = Scheduler(default_max_starts=2)
    sched.add_host("a", Resources(64, 64 * GiB))
    sched.add_host("b", Resources(64, 64 * GiB), max_starts=1)
    placed = [a for i in range(4) for a in sched.submit(f"r{i}", small(), now=i)]
    assert sorted(p.host_id for p in placed) == ["a", "a", "b"]
    assert sched.start_failed(placed[0].request_id, now=5) == [Place("r3", "a")]
    assert (host_stats(sched, "a").max_starts, host_stats(sched, "b").max_starts) == (2, 1)


def test_started_and_start_failed_errors() -> None:
    sched = cluster("a", cpus=1)
    sched.submit("r1", small(), now=0)
    sched.submit("r2", small(), now=0)
    with pytest.raises(NotFound) as not_found:
        sched.started("nope", now=1)
    assert str(not_found.value) == (
        "request 'nope' cannot be marked started: no such request"
        " (never submitted, or already gone)"
    )
    with pytest.raises(BadRequest) as queued:
        sched.started("r2", now=1)
    assert str(queued.value) == (
        "request 'r2' cannot be marked started: it is queued, not placed (cancel it instead)"
    )
    sched.started("r1", now=1)
    with pytest.raises(BadRequest) as twice:
        sched.started("r1", now=2)
    assert str(twice.value) == "request 'r1' cannot be marked started: it has already started"
    with pytest.raises(BadRequest) as late:
        sched.start_failed("r1", now=2)
    assert str(late.value) == ("request 'r1' cannot be marked start-failed: it has already started")


def test_release_errors() -> None:
    sched = cluster("a", cpus=1)
    sched.submit("r1", small(), now=0)
    sched.submit("r2", small(), now=0)
    with pytest.raises(BadRequest) as queued:
        sched.release("r2", now=1)
    assert str(queued.value) == (
        "request 'r2' cannot be released: it is queued, not placed (cancel it instead)"
    )
    sched.release("r1", now=1)
    with pytest.raises(NotFound) as gone:
        sched.release("r1", now=2)
    assert str(gone.value) == (
        "request 'r1' cannot be released: no such request (never submitted, or already gone)"
    )


def test_release_while_starting_frees_the_start_slot_too() -> None:
    sched = Scheduler(default_max_starts=1)
    sched.add_host("a", Resources(8, 8 * GiB))
    sched.submit("r1", small(), now=0)
    sched.submit("r2", small(), now=0)
    assert sched.release("r1", now=1) == [Place("r2", "a")]


def test_sandbox_count_limit() -> None:
    sched = Scheduler()
    sched.add_host("a", Resources(64, 64 * GiB, sandboxes=2))
    placed = [a for i in range(3) for a in sched.submit(f"r{i}", small(), now=i)]
    assert len(placed) == 2
    sched.started("r0", now=3)  # a free start slot is not a free sandbox slot
    assert sched.statistics().queue_depth == 1
    assert sched.release("r0", now=4) == [Place("r2", "a")]


def test_fractional_cpus_are_counted_exactly() -> None:
    sched = cluster("a", cpus=0.3, default_max_starts=100)
    placed = [a for i in range(4) for a in sched.submit(f"r{i}", Demand(0.1, 0), now=0)]
    assert [p.request_id for p in placed] == ["r0", "r1", "r2"]  # 0.1 * 3 > 0.3 in floats
    assert sched.release("r0", now=1) == [Place("r3", "a")]
    for request_id in ("r1", "r2", "r3"):
        sched.release(request_id, now=2)
    assert host_stats(sched, "a").used == Resources(0, 0, 0)
