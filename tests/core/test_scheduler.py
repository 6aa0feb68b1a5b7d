"""The sans-IO scheduler: admission, queueing, start caps, placement policies, host changes."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rock_core._errors import AlreadyExists, BadRequest, CapacityError, NotFound
from rock_core._scheduler import (
    Demand,
    HostStatistics,
    Place,
    Resources,
    Scheduler,
    SchedulerStatistics,
)

GiB = 1 << 30


def small(image: str = "") -> Demand:
    return Demand(1, GiB, image)


def cluster(*hosts: str, cpus: float = 4, policy: str = "spread", **kw: int) -> Scheduler:
    sched = Scheduler(policy=policy, **kw)  # type: ignore[arg-type]
    for host in hosts:
        assert sched.add_host(host, Resources(cpus, 16 * GiB)) == []
    return sched


def host_stats(sched: Scheduler, host_id: str) -> HostStatistics:
    (stats,) = [h for h in sched.statistics().hosts if h.host_id == host_id]
    return stats


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


# ---------------------------------------------------------------------------- placement


def test_spread_puts_each_request_on_the_emptiest_host() -> None:
    sched = cluster("a", "b", "c")
    placed = [a for i in range(6) for a in sched.submit(f"r{i}", small(), now=i)]
    assert [p.host_id for p in placed] == ["a", "b", "c", "a", "b", "c"]


def test_binpack_fills_the_fullest_host_that_fits() -> None:
    sched = cluster("a", "b", "c", policy="binpack")
    assert sched.submit("r0", Demand(3, GiB), now=0) == [Place("r0", "a")]
    assert sched.submit("r1", Demand(2, GiB), now=0) == [Place("r1", "b")]
    assert sched.submit("r2", small(), now=0) == [Place("r2", "a")]
    assert sched.submit("r3", small(), now=0) == [Place("r3", "b")]
    assert sched.submit("r4", small(), now=0) == [Place("r4", "b")]
    assert sched.submit("r5", small(), now=0) == [Place("r5", "c")]


def test_spread_compares_shares_not_absolute_room() -> None:
    sched = Scheduler(default_max_starts=100)
    sched.add_host("big", Resources(16, 64 * GiB))
    sched.add_host("small", Resources(2, 8 * GiB))
    hosts = [a.host_id for i in range(10) for a in sched.submit(f"r{i}", small(), now=0)]
    # One cpu is 1/16 of big and 1/2 of small: small's first turn comes when big would reach
    # half (a tie, won by small's fewer starts in flight), its second only when big is full.
    assert hosts == ["big"] * 7 + ["small", "big", "big"]


def test_spread_weighs_the_dominant_resource() -> None:
    sched = Scheduler()
    sched.add_host("a", Resources(4, 4 * GiB))
    sched.add_host("b", Resources(4, 4 * GiB))
    sched.submit("mem", Demand(0, 3 * GiB), now=0)  # a: memory 3/4 used
    sched.submit("cpu", Demand(2, 0), now=0)  # b: cpus 2/4 used
    assert sched.submit("next", Demand(0.5, GiB // 2), now=0) == [Place("next", "b")]


def test_ties_go_to_fewer_starts_in_flight_then_host_id() -> None:
    for policy in ("spread", "binpack"):
        sched = cluster("b", "a", policy=policy)
        zero = Demand(0, 0)  # takes nothing: every host's share stays equal
        assert sched.submit("r0", zero, now=0) == [Place("r0", "a")]
        assert sched.submit("r1", zero, now=0) == [Place("r1", "b")]
        sched.started("r0", now=1)
        assert sched.submit("r2", zero, now=2) == [Place("r2", "a")]


@pytest.mark.parametrize(
    ("policy", "no_image", "unknown_image"), [("spread", "b", "b"), ("binpack", "a", "c")]
)
def test_hosts_with_the_image_come_first(policy: str, no_image: str, unknown_image: str) -> None:
    sched = cluster("a", "b", "c", policy=policy)
    sched.host_images("c", ["py"])
    assert sched.submit("load", Demand(3, GiB), now=0) == [Place("load", "a")]
    # Spread alone would pick b (emptiest), binpack a (fullest): the image beats both.
    assert sched.submit("r1", small("py"), now=0) == [Place("r1", "c")]
    assert sched.submit("r2", small("py"), now=0) == [Place("r2", "c")]
    # Without an image, or with one no host has, the policy alone decides.
    assert sched.submit("r3", small(), now=0) == [Place("r3", no_image)]
    assert sched.submit("r4", small("nowhere"), now=0) == [Place("r4", unknown_image)]


def test_image_preference_yields_when_the_host_is_full() -> None:
    sched = cluster("a", "b", cpus=1)
    sched.host_images("b", ["img"])
    assert sched.submit("r1", small("img"), now=0) == [Place("r1", "b")]
    assert sched.submit("r2", small("img"), now=0) == [Place("r2", "a")]


def test_a_started_container_teaches_the_host_its_image() -> None:
    sched = cluster("a", "b")
    sched.submit("r1", small("img"), now=0)
    assert host_stats(sched, "a").images == ()
    sched.started("r1", now=1)
    assert host_stats(sched, "a").images == ("img",)
    sched.submit("r2", small("other"), now=2)  # spread: goes to b
    assert sched.submit("r3", small("img"), now=2) == [Place("r3", "a")]
    sched.host_images("a", [])
    assert host_stats(sched, "a").images == ()


# ------------------------------------------------------------------------------- hosts


def test_draining_host_takes_nothing_new_and_keeps_its_placements() -> None:
    sched = cluster("a", "b", cpus=1)
    sched.submit("r1", small(), now=0)
    assert sched.drain_host("a") == []
    assert sched.submit("r2", small(), now=1) == [Place("r2", "b")]
    assert sched.submit("r3", small(), now=1) == []
    sched.release("r1", now=2)  # room on a, but a is draining
    stats = host_stats(sched, "a")
    assert (stats.draining, stats.used.sandboxes) == (True, 0)
    assert sched.statistics().queue_depth == 1
    assert sched.drain_host("a", draining=False) == [Place("r3", "a")]
    assert host_stats(sched, "a").draining is False


def test_remove_host_returns_its_placements_and_forgets_them() -> None:
    sched = cluster("a", "b", cpus=2)
    placed = [a for i in range(5) for a in sched.submit(f"r{i}", small(), now=i)]
    on_a = sorted(p.request_id for p in placed if p.host_id == "a")
    assert sched.remove_host("a") == on_a == ["r0", "r2"]
    for request_id in on_a:
        with pytest.raises(NotFound, match=f"^request '{request_id}' cannot be released"):
            sched.release(request_id, now=6)
    stats = sched.statistics()
    assert [h.host_id for h in stats.hosts] == ["b"]
    assert (stats.placed, stats.queue_depth) == (2, 1)
    assert sched.release("r1", now=7) == [Place("r4", "b")]
    with pytest.raises(NotFound) as info:
        sched.remove_host("a")
    assert str(info.value) == "no host 'a'"


def test_queued_requests_outlive_the_only_host_that_could_hold_them() -> None:
    sched = cluster("small", cpus=1)
    sched.add_host("big", Resources(8, 16 * GiB))
    sched.submit("fill", Demand(8, GiB), now=0)
    sched.submit("big-2", Demand(8, GiB), now=1)
    assert sched.remove_host("big") == ["fill"]
    assert sched.statistics().queue_depth == 1
    with pytest.raises(CapacityError, match="the largest host is 'small'"):
        sched.submit("big-3", Demand(8, GiB), now=2)
    assert sched.add_host("big", Resources(8, 16 * GiB)) == [Place("big-2", "big")]


def test_adding_a_host_places_waiting_requests() -> None:
    sched = cluster("a", cpus=1)
    sched.submit("r1", small(), now=0)
    sched.submit("r2", small(), now=0)
    assert sched.add_host("b", Resources(1, GiB), images=["x"]) == [Place("r2", "b")]
    assert host_stats(sched, "b").images == ("x",)


def test_host_errors() -> None:
    sched = cluster("a")
    with pytest.raises(AlreadyExists, match=r"^host 'a' is already known$"):
        sched.add_host("a", Resources(1, GiB))
    with pytest.raises(BadRequest, match=r"^max_starts for host 'b' must be >= 1, got 0$"):
        sched.add_host("b", Resources(1, GiB), max_starts=0)
    with pytest.raises(BadRequest, match=r"^host 'c' has an invalid capacity: Resources\("):
        sched.add_host("c", Resources(1, -1))
    with pytest.raises(BadRequest, match=r"^host 'd' has an invalid capacity"):
        sched.add_host("d", Resources(1, GiB, sandboxes=-1))
    for call in (sched.drain_host, sched.remove_host, lambda h: sched.host_images(h, [])):
        with pytest.raises(NotFound, match=r"^no host 'zz'$"):
            call("zz")
    assert [h.host_id for h in sched.statistics().hosts] == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "random"}, "unknown placement policy 'random': use 'spread' or 'binpack'"),
        ({"max_queue": -1}, "max_queue and max_bypass must be >= 0, got -1 and 32"),
        ({"max_bypass": -1}, "max_queue and max_bypass must be >= 0, got 10000 and -1"),
        ({"default_max_starts": 0}, "default_max_starts must be >= 1, got 0"),
    ],
)
def test_constructor_validates(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Scheduler(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


# -------------------------------------------------------------------------- statistics


def test_statistics_snapshot() -> None:
    sched = Scheduler(default_max_starts=2)
    sched.add_host("b", Resources(4, 8 * GiB, sandboxes=10), images=["y", "x"])
    sched.add_host("a", Resources(2, 4 * GiB))
    sched.submit("r1", Demand(1.5, GiB), now=0)  # b: 1.5/4 beats a: 1.5/2
    sched.submit("r2", Demand(0.5, 2 * GiB), now=1)  # 1/2 on both; a has no start in flight
    sched.submit("r3", Demand(4, GiB), now=2)  # queued: no host has 4 cpus free
    sched.started("r1", now=3)
    sched.drain_host("b")
    with pytest.raises(CapacityError):
        sched.submit("r4", Demand(5, GiB), now=4)
    stats = sched.statistics()
    assert stats == SchedulerStatistics(
        hosts=(
            HostStatistics(
                host_id="a",
                capacity=Resources(2, 4 * GiB),
                used=Resources(0.5, 2 * GiB, 1),
                starting=1,
                max_starts=2,
                draining=False,
                images=(),
            ),
            HostStatistics(
                host_id="b",
                capacity=Resources(4, 8 * GiB, 10),
                used=Resources(1.5, GiB, 1),
                starting=0,
                max_starts=2,
                draining=True,
                images=("x", "y"),
            ),
        ),
        queue_depth=1,
        placed=2,
        starting=1,
        placements=2,
        rejections=1,
        oldest_queued_since=2.0,
    )
    decoded = msgspec.json.decode(msgspec.json.encode(stats), type=SchedulerStatistics)
    assert decoded == stats


def test_place_is_a_tagged_wire_message() -> None:
    assert msgspec.json.encode(Place("r1", "a")) == (
        b'{"type":"Place","request_id":"r1","host_id":"a"}'
    )


# ------------------------------------------------------------------- property: a model


class SchedulerModel(RuleBasedStateMachine):
    """Random events against a plain model: no host over-committed, no request lost.

    Cpus are whole quarters, exact in floats, so the model's sums are exact.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sched = Scheduler()
        self.hosts: dict[str, tuple[Resources, int]] = {}  # capacity, max_starts
        self.draining: set[str] = set()
        self.demands: dict[str, Demand] = {}
        self.queued: list[str] = []  # in submission order
        self.starting: dict[str, str] = {}  # request -> host
        self.running: dict[str, str] = {}
        self.next_id = 0

    @initialize(
        policy=st.sampled_from(["spread", "binpack"]),
        max_queue=st.sampled_from([0, 2, 1000]),
        max_bypass=st.sampled_from([0, 1, 32]),
    )
    def setup(self, policy: str, max_queue: int, max_bypass: int) -> None:
        self.sched = Scheduler(policy, max_queue, max_bypass=max_bypass)  # type: ignore[arg-type]

    # -- helpers

    def placed(self) -> dict[str, str]:
        return {**self.starting, **self.running}

    def apply(self, actions: list[Place]) -> None:
        for action in actions:
            assert action.request_id in self.queued, action
            assert action.host_id in self.hosts and action.host_id not in self.draining
            self.queued.remove(action.request_id)
            self.starting[action.request_id] = action.host_id

    def free(self, host_id: str) -> tuple[float, int, float, int]:
        """Free cpus, memory, sandbox slots (inf = no limit) and start slots on a host."""
        capacity, max_starts = self.hosts[host_id]
        on_host = [r for r, h in self.placed().items() if h == host_id]
        return (
            capacity.cpus - sum(self.demands[r].cpus for r in on_host),
            capacity.memory - sum(self.demands[r].memory for r in on_host),
            capacity.sandboxes - len(on_host) if capacity.sandboxes else math.inf,
            max_starts - sum(1 for r, h in self.starting.items() if h == host_id),
        )

    # -- rules

    @rule(
        host_id=st.sampled_from(["h0", "h1", "h2", "h3"]),
        cpus=st.sampled_from([1, 2, 4]),
        memory=st.sampled_from([2, 4, 8]),
        sandboxes=st.sampled_from([0, 1, 3]),
        max_starts=st.sampled_from([1, 2, 8]),
    )
    def add_host(
        self, host_id: str, cpus: int, memory: int, sandboxes: int, max_starts: int
    ) -> None:
        if host_id in self.hosts:
            return
        capacity = Resources(cpus, memory * GiB, sandboxes)
        self.hosts[host_id] = (capacity, max_starts)
        self.apply(self.sched.add_host(host_id, capacity, max_starts=max_starts))

    @precondition(lambda self: self.hosts)
    @rule(data=st.data())
    def remove_host(self, data: st.DataObject) -> None:
        host_id = data.draw(st.sampled_from(sorted(self.hosts)))
        on_host = sorted(r for r, h in self.placed().items() if h == host_id)
        assert self.sched.remove_host(host_id) == on_host
        del self.hosts[host_id]
        self.draining.discard(host_id)
        for request_id in on_host:
            self.starting.pop(request_id, None)
            self.running.pop(request_id, None)

    @precondition(lambda self: self.hosts)
    @rule(data=st.data())
    def toggle_drain(self, data: st.DataObject) -> None:
        host_id = data.draw(st.sampled_from(sorted(self.hosts)))
        self.draining ^= {host_id}
        self.apply(self.sched.drain_host(host_id, host_id in self.draining))

    @rule(
        cpus=st.sampled_from([0, 0.25, 0.5, 1, 2, 3, 5]),
        memory=st.sampled_from([0, 1, 2, 4, 16]),
        image=st.sampled_from(["", "a", "b"]),
    )
    def submit(self, cpus: float, memory: int, image: str) -> None:
        request_id = f"r{self.next_id}"
        self.next_id += 1
        demand = Demand(cpus, memory * GiB, image)
        self.demands[request_id] = demand
        holdable = any(
            c.cpus >= demand.cpus and c.memory >= demand.memory for c, _ in self.hosts.values()
        )
        self.queued.append(request_id)
        try:
            actions = self.sched.submit(request_id, demand, now=self.next_id)
        except CapacityError as exc:
            self.queued.remove(request_id)
            if holdable:
                assert str(exc).startswith("queue full")
            else:
                assert str(exc).startswith(f"no host can ever hold request '{request_id}'")
            return
        assert holdable
        self.apply(actions)

    @precondition(lambda self: self.starting)
    @rule(data=st.data(), ok=st.booleans())
    def start_finished(self, data: st.DataObject, ok: bool) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.starting)))
        host_id = self.starting.pop(request_id)
        if ok:
            self.running[request_id] = host_id
            self.apply(self.sched.started(request_id, now=self.next_id))
        else:
            self.apply(self.sched.start_failed(request_id, now=self.next_id))

    @precondition(lambda self: self.starting or self.running)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.placed())))
        self.starting.pop(request_id, None)
        self.running.pop(request_id, None)
        self.apply(self.sched.release(request_id, now=self.next_id))

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(self.queued))
        self.queued.remove(request_id)
        self.apply(self.sched.cancel(request_id))

    # -- invariants

    @invariant()
    def no_host_is_over_committed(self) -> None:
        for host_id in self.hosts:
            cpus, memory, sandboxes, starts = self.free(host_id)
            assert cpus >= 0 and memory >= 0 and sandboxes >= 0 and starts >= 0

    @invariant()
    def statistics_agree_with_the_model(self) -> None:
        stats = self.sched.statistics()
        assert (stats.queue_depth, stats.placed, stats.starting) == (
            len(self.queued),
            len(self.placed()),
            len(self.starting),
        )
        assert [h.host_id for h in stats.hosts] == sorted(self.hosts)
        for host in stats.hosts:
            capacity, max_starts = self.hosts[host.host_id]
            cpus, memory, _, starts = self.free(host.host_id)
            assert host.used.cpus == pytest.approx(capacity.cpus - cpus, abs=1e-9)
            assert host.used.memory == capacity.memory - memory
            assert host.starting == max_starts - starts
            assert host.draining == (host.host_id in self.draining)

    @invariant()
    def the_oldest_waiting_request_fits_nowhere(self) -> None:
        if not self.queued:
            return
        demand = self.demands[self.queued[0]]
        for host_id in set(self.hosts) - self.draining:
            cpus, memory, sandboxes, starts = self.free(host_id)
            fits = cpus >= demand.cpus and memory >= demand.memory
            assert not (fits and sandboxes > 0 and starts > 0), (
                self.queued[0],
                host_id,
            )

    def teardown(self) -> None:
        """Given room, every waiting request is eventually placed: none was lost."""
        if not self.queued:
            return
        self.add_host("rescue", 8, 32, 0, 8)
        for host_id in sorted(self.draining):
            self.draining.discard(host_id)  # before applying: it may place there at once
            self.apply(self.sched.drain_host(host_id, False))
        while self.queued:
            waiting = len(self.queued)
            for request_id in sorted(self.placed()):
                self.starting.pop(request_id, None)
                self.running.pop(request_id, None)
                self.apply(self.sched.release(request_id, now=self.next_id))
            assert len(self.queued) < waiting


SchedulerModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_scheduler_model = SchedulerModel.TestCase
