"""The sans-IO scheduler: placement policies, images, host changes, validation, statistics."""

from __future__ import annotations

import msgspec
import pytest

from rock_core._errors import AlreadyExists, BadRequest, CapacityError, NotFound
from rock_core._scheduler import (
    Demand,
    HostStatistics,
    Place,
    Resources,
    Scheduler,
    SchedulerStatistics,
)

from .scheduler_kit import GiB, cluster, host_stats, small

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
