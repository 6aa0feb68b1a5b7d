"""`PoolPolicy`: a warm pool's refill, backoff, shrink and trim rules as plain calls with `now`
values (virtual time by construction: no clock, no awaits)."""

from __future__ import annotations

import pytest

from rock_core._pool_policy import (
    BACKOFF_MAX,
    CHECK_INTERVAL,
    REFILL_DELAY,
    Plan,
    PoolPolicy,
)

ROOM = 100  # free starts: the cluster never holds refills back


def make(
    min_size: int = 1, max_size: int = 3, concurrency: int = 4, shrink_after: float = 60.0
) -> PoolPolicy:
    return PoolPolicy(
        min_size=min_size,
        max_size=max_size,
        refill_concurrency=concurrency,
        shrink_after=shrink_after,
        now=0.0,
    )


def fill(policy: PoolPolicy, now: float, *ids: str) -> None:
    """Plan the refills for `ids` and have each succeed at `now`."""
    assert policy.plan(now, ROOM).refills == len(ids)
    for sandbox_id in ids:
        policy.refilled(sandbox_id, now)


def test_a_new_pool_refills_to_min_size_and_then_waits() -> None:
    policy = make(min_size=3)
    assert policy.plan(0.0, ROOM) == Plan(3, (), CHECK_INTERVAL, False)
    assert (policy.in_flight, policy.size) == (3, 3)
    assert policy.plan(0.1, ROOM) == Plan(0, (), 0.1 + CHECK_INTERVAL, False)  # in flight
    for i, sandbox_id in enumerate(["m1", "m2", "m3"]):
        policy.refilled(sandbox_id, 1.0 + i)
    assert policy.ready_ids() == ["m1", "m2", "m3"]
    assert (policy.in_flight, policy.refills, policy.size) == (0, 3, 3)
    assert policy.plan(5.0, ROOM).refills == 0


def test_refills_are_bounded_by_concurrency_and_by_the_clusters_free_starts() -> None:
    policy = make(min_size=6, max_size=6, concurrency=2)
    plan = policy.plan(0.0, ROOM)
    assert (plan.refills, plan.wants_room) == (2, False)  # the pool itself says "busy"
    policy.refill_stopped()
    policy.refill_stopped()
    plan = policy.plan(1.0, 1)
    # One start free: one refill, and the next is held back by the cluster alone.
    assert (plan.refills, plan.wants_room) == (1, True)
    plan = policy.plan(2.0, 0)
    assert (plan.refills, plan.wants_room, plan.wake_at) == (0, True, 2.0 + CHECK_INTERVAL)


def test_no_refill_starts_right_after_a_hit() -> None:
    policy = make(min_size=1)
    fill(policy, 0.0, "m1")
    assert policy.take() == "m1"
    policy.hit(10.0)
    assert policy.take() is None
    assert policy.plan(10.0, ROOM) == Plan(0, (), 10.0 + REFILL_DELAY, False)
    assert policy.plan(10.0 + REFILL_DELAY, ROOM).refills == 1
    assert policy.hits == 1


def test_failed_refills_back_off_doubling_up_to_a_limit_and_a_success_resets() -> None:
    policy = make(min_size=1)
    now = 0.0
    waits = []
    for _ in range(9):
        assert policy.plan(now, ROOM).refills == 1
        policy.refill_failed(now)
        plan = policy.plan(now, ROOM)
        assert plan.refills == 0  # backing off
        waits.append(policy.retry_at - now)
        assert plan.wake_at == now + min(CHECK_INTERVAL, policy.retry_at - now)
        now = policy.retry_at
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_MAX, BACKOFF_MAX, BACKOFF_MAX]
    assert policy.plan(now, ROOM).refills == 1
    policy.refilled("m1", now)
    assert (policy.failures_in_row, policy.retry_at) == (0, 0.0)
    assert policy.take() == "m1"
    policy.hit(now)
    assert policy.plan(now + REFILL_DELAY, ROOM).refills == 1  # no backoff left


def test_a_failed_refill_that_made_a_sandbox_dooms_it() -> None:
    policy = make(min_size=3)
    assert policy.plan(0.0, ROOM).refills == 3
    policy.refill_failed(1.0, "made")
    policy.refill_stopped("cancelled")  # the pool halted during its prepare
    policy.refill_stopped()  # cancelled before a sandbox existed
    assert (policy.in_flight, policy.doomed) == (0, {"made", "cancelled"})
    assert policy.plan(1.0, ROOM).deletes == ("cancelled", "made")


def test_misses_raise_the_target_up_to_max_size_and_it_shrinks_one_step_per_quiet_period() -> None:
    policy = make(min_size=1, max_size=3, shrink_after=10.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        policy.miss(t)
    assert (policy.misses, policy.target, policy.target_since) == (4, 3, 4.0)
    assert policy.plan(4.0, ROOM).refills == 3
    for sandbox_id in ("m1", "m2", "m3"):
        policy.refilled(sandbox_id, 5.0)
    assert policy.plan(5.0, ROOM).wake_at == 5.0 + CHECK_INTERVAL
    assert policy.plan(13.9, ROOM) == Plan(0, (), 14.0, False)  # the target's next step down
    assert policy.target == 3
    # 10 s without a miss: one step down. The extra member is trimmed once it has been idle
    # for 10 s too (ready since 5.0).
    assert policy.plan(14.0, ROOM) == Plan(0, (), 15.0, False)
    assert (policy.target, policy.ready_ids()) == (2, ["m1", "m2", "m3"])
    assert policy.plan(15.0, ROOM) == Plan(0, ("m1",), 16.0, False)
    assert policy.plan(24.0, ROOM).deletes == ("m2",)
    assert (policy.target, policy.ready_ids()) == (1, ["m3"])
    assert policy.plan(40.0, ROOM) == Plan(0, (), 41.0, False)  # at min_size: no more steps
    assert policy.target == 1


def test_only_members_idle_for_shrink_after_are_trimmed_oldest_first() -> None:
    policy = make(min_size=1, max_size=3, shrink_after=10.0)
    policy.want(3, 0.0)
    assert policy.plan(0.0, ROOM).refills == 3
    policy.refilled("old", 0.0)
    policy.refilled("mid", 0.0)
    policy.refilled("new", 8.0)
    plan = policy.plan(10.0, ROOM)  # the target drops to 2; "old" has been idle for 10 s
    assert plan.deletes == ("old",)
    assert policy.plan(12.0, ROOM).deletes == ()  # at the target (2): nothing to trim
    plan = policy.plan(20.0, ROOM)  # the target drops to 1: "mid" is idle, "new" is not yet
    assert (plan.deletes, policy.ready_ids(), plan.wake_at) == (("mid",), ["new"], 21.0)


def test_a_miss_starts_the_quiet_period_again() -> None:
    policy = make(min_size=0, max_size=2, shrink_after=10.0)
    policy.want(2, 0.0)
    fill(policy, 0.0, "a", "b")
    policy.want(2, 9.0)  # no change: the target is 2 already
    policy.miss(9.0)  # the target stays at max_size, but the quiet period starts again
    plan = policy.plan(19.0, ROOM)
    assert (plan.deletes, policy.target) == (("a",), 1)


def test_dead_members_are_discarded_and_deleted_once() -> None:
    policy = make(min_size=2)
    fill(policy, 0.0, "m1", "m2")
    policy.died("m1")
    assert (policy.ready_ids(), policy.discarded, policy.doomed) == (["m2"], 1, {"m1"})
    plan = policy.plan(1.0, ROOM)
    assert (plan.refills, plan.deletes) == (1, ("m1",))
    assert policy.plan(1.0, ROOM).deletes == ()  # its delete runs: not asked again
    policy.deleted("m1")
    assert policy.doomed == set()


def test_a_cancelled_delete_is_asked_again_and_left_for_idle() -> None:
    policy = make(min_size=1)
    fill(policy, 0.0, "m1")
    assert policy.take() == "m1"
    policy.discard("m1")  # taken, but found not running
    assert policy.plan(1.0, ROOM).deletes == ("m1",)
    policy.delete_stopped("m1")
    assert policy.plan(2.0, ROOM).deletes == ("m1",)
    policy.delete_stopped("m1")
    policy.refilled("m2", 3.0)  # the refill planned at 1.0
    policy.close()
    assert policy.plan(4.0, ROOM).refills == 0
    assert policy.idle() == ["m2", "m1"]  # ready first, then doomed
    assert (policy.ready_ids(), policy.doomed, policy.size) == ([], set(), 0)


def test_a_reset_member_goes_back_only_while_open_and_below_max_size() -> None:
    policy = make(min_size=1, max_size=2)
    fill(policy, 0.0, "m1")
    assert policy.room_for_reset()
    assert policy.put_back("r1", 5.0)
    assert (policy.ready_ids(), policy.resets) == (["m1", "r1"], 1)
    assert not policy.room_for_reset()
    assert not policy.put_back("r2", 6.0)
    assert policy.take() == "m1"
    policy.close()
    assert not policy.put_back("r2", 7.0)
    assert policy.resets == 1


def test_waiting_for_more_raises_the_target_like_misses_do() -> None:
    policy = make(min_size=1, max_size=5)
    assert policy.want(4, 2.0)
    assert not policy.want(3, 3.0)
    assert (policy.target, policy.target_since) == (4, 2.0)
    assert policy.plan(2.0, ROOM).refills == 4


def test_the_refill_rate_counts_the_last_minute() -> None:
    policy = make(min_size=3)
    assert policy.refill_rate(0.0) == 0.0
    fill(policy, 10.0, "m1", "m2", "m3")
    assert policy.refill_rate(20.0) == pytest.approx(3 / 20.0)  # open for 20 s
    assert policy.refill_rate(69.0) == pytest.approx(3 / 60.0)
    assert policy.refill_rate(71.0) == 0.0


def test_planning_at_wake_at_always_acts_on_the_deadline_it_woke_for() -> None:
    # Times that do not add up exactly in binary: a deadline computed two ways could differ by
    # a rounding and have the driver plan again and again at the same instant.
    policy = make(min_size=0, max_size=3, shrink_after=0.3)
    policy.want(3, 0.1)
    assert policy.plan(0.1, ROOM).refills == 3
    for sandbox_id in ("a", "b", "c"):
        policy.refilled(sandbox_id, 0.1)
    now, seen = 0.1, []
    while policy.target or policy.ready:
        plan = policy.plan(now, ROOM)
        assert plan.wake_at > now or plan.deletes, (now, plan)
        seen.extend((sandbox_id, round(now, 6)) for sandbox_id in plan.deletes)
        now = plan.wake_at
    assert seen == [("a", 0.4), ("b", 0.7), ("c", 1.0)]  # one per quiet period of 0.3 s
