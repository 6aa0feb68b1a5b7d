"""`PoolPolicy`: a warm pool's decisions as plain code; the refill, backoff, shrink and trim
rules of `rock_core._pool` (whose docstring states them) without any I/O.

Rules:
- Sans-IO: the driver tells the policy what happened (a member handed out, a miss, a refill
  done or failed, a member found dead, a delete done...), passing `now` where time matters,
  and asks `plan(now, free_starts)` what to do next. No awaits, clocks or records in here:
  members are sandbox ids.
- `plan` counts the refills it asks for as in flight at once (each must end in `refilled`,
  `refill_failed` or `refill_stopped`) and the deletes it asks for as deleting (each must end
  in `deleted` or `delete_stopped`), so one plan never repeats another's work.
- `wake_at` is when the driver must plan again if nothing happens first; with `wants_room` the
  only thing that holds refills back is the cluster (no start slot or room free, or someone
  queued), so the driver also plans again when the cluster's capacity changes.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

BACKOFF_BASE = 0.5  # seconds before retrying after a failed refill; doubles up to BACKOFF_MAX
BACKOFF_MAX = 30.0
CHECK_INTERVAL = 1.0  # seconds between plans when nothing else happens (dead-member checks)
RATE_WINDOW = 60.0  # seconds over which `refill_rate` is measured
REFILL_DELAY = 0.05  # seconds a refill waits after a hit: the caller's first commands go first


class Plan(NamedTuple):
    """What the driver does now: start `refills` refills, delete `deletes` in the background,
    and plan again at `wake_at` (or, with `wants_room`, when the cluster's capacity changes)."""

    refills: int
    deletes: tuple[str, ...]
    wake_at: float
    wants_room: bool


class PoolPolicy:
    """The state and rules of one warm pool; see the module's rules.

    `ready` holds the ready members, oldest first, with when each became ready. `doomed` holds
    members to delete until their delete is done (so that closing deletes those whose
    background delete was cut short).
    """

    def __init__(
        self,
        *,
        min_size: int,
        max_size: int,
        refill_concurrency: int,
        shrink_after: float,
        now: float,
    ) -> None:
        self.min_size = min_size
        self.max_size = max_size
        self.refill_concurrency = refill_concurrency
        self.shrink_after = shrink_after
        self.ready: deque[tuple[str, float]] = deque()
        self.in_flight = 0
        self.doomed: set[str] = set()
        self.deleting: set[str] = set()  # doomed members whose background delete runs now
        self.target = min_size
        self.target_since = now  # the last miss, or the last shrink step
        self.opened = now
        self.closed = False
        self.hits = self.misses = self.refills = self.resets = self.discarded = 0
        self.failures_in_row = 0
        self.retry_at = 0.0
        self.hit_at = -REFILL_DELAY
        self._refill_times: deque[float] = deque()

    @property
    def size(self) -> int:
        """Members ready and being made: never above `max_size`."""
        return len(self.ready) + self.in_flight

    def ready_ids(self) -> list[str]:
        """The ready members, oldest first."""
        return [sandbox_id for sandbox_id, _ in self.ready]

    # ------------------------------------------------------------------ the plan

    def plan(self, now: float, free_starts: int) -> Plan:
        """Shrink the target and trim idle extras, then say what to start: refills (at most
        `free_starts`, the creates the cluster could start now) and background deletes."""
        self._shrink(now)
        deletes = tuple(sorted(self.doomed - self.deleting))
        self.deleting.update(deletes)
        refills = 0
        blocker = self._blocker(now)
        while blocker is None and refills < free_starts:
            refills += 1
            self.in_flight += 1
            blocker = self._blocker(now)
        wants_room = blocker is None  # only the cluster's room held the next refill back
        return Plan(refills, deletes, self._wake_at(now, blocker), wants_room)

    def may_refill(self, now: float) -> bool:
        """Whether the pool itself would start a refill now (the cluster's room aside): the
        driver asks the cluster for room only then."""
        return self._blocker(now) is None

    def _shrink(self, now: float) -> None:
        # Each rule compares `now` with the very deadline `_wake_at` wakes the driver at: a
        # deadline computed two ways could differ by a rounding and spin the driver.
        if self.target > self.min_size and now >= self.target_since + self.shrink_after:
            self.target -= 1
            self.target_since = now
        while (
            self.ready and self.size > self.target and now >= self.ready[0][1] + self.shrink_after
        ):
            self.doom(self.ready.popleft()[0])

    def _blocker(self, now: float) -> str | None:
        """Why the pool itself lets no refill start now (None: it would let one)."""
        if self.closed or self.size >= self.target:
            return "full"
        if self.in_flight >= self.refill_concurrency:
            return "busy"
        if now < self.retry_at:
            return "backoff"
        if now < self.hit_at + REFILL_DELAY:
            return "after a hit"
        return None

    def _wake_at(self, now: float, blocker: str | None) -> float:
        """When to plan again if nothing happens first (never before `now`)."""
        wake_at = now + CHECK_INTERVAL
        if blocker == "backoff":
            wake_at = min(wake_at, self.retry_at)
        elif blocker == "after a hit":
            wake_at = min(wake_at, self.hit_at + REFILL_DELAY)
        if self.target > self.min_size:
            wake_at = min(wake_at, self.target_since + self.shrink_after)
        if self.ready and len(self.ready) > self.target:
            wake_at = min(wake_at, self.ready[0][1] + self.shrink_after)
        return max(wake_at, now)

    # ------------------------------------------------------------------ hand-outs

    def take(self) -> str | None:
        """The oldest ready member, removed from `ready` (None if none is ready). The driver
        checks that it still runs: then `hit`, else `discard`."""
        return self.ready.popleft()[0] if self.ready else None

    def hit(self, now: float) -> None:
        """A ready member was handed out."""
        self.hits += 1
        self.hit_at = now

    def miss(self, now: float) -> None:
        """Nothing was ready: a cold start is handed out, and the target grows by one."""
        self.misses += 1
        if self.target < self.max_size:
            self.target += 1
        self.target_since = now

    def want(self, count: int, now: float) -> bool:
        """Someone waits for `count` ready: raise the target to it (True if it grew)."""
        if count <= self.target:
            return False
        self.target = count
        self.target_since = now
        return True

    def room_for_reset(self) -> bool:
        """Whether a released member may be reset and put back (open and below `max_size`)."""
        return not self.closed and self.size < self.max_size

    def put_back(self, sandbox_id: str, now: float) -> bool:
        """A reset member is ready again, if there is still room (False: delete it)."""
        if not self.room_for_reset():
            return False
        self.ready.append((sandbox_id, now))
        self.resets += 1
        return True

    def died(self, sandbox_id: str) -> None:
        """A ready member was found not running: discard it."""
        self.ready = deque(m for m in self.ready if m[0] != sandbox_id)
        self.discard(sandbox_id)

    def discard(self, sandbox_id: str) -> None:
        """A member that is not running is deleted, and counted as discarded."""
        self.discarded += 1
        self.doom(sandbox_id)

    def doom(self, sandbox_id: str) -> None:
        """Delete this member (in the background; by `idle` if the pool closes first)."""
        self.doomed.add(sandbox_id)

    # ------------------------------------------------------------------ refills and deletes

    def refilled(self, sandbox_id: str, now: float) -> None:
        """A refill made and prepared a member: it is ready, and the backoff resets."""
        self.in_flight -= 1
        self.ready.append((sandbox_id, now))
        self.refills += 1
        self._refill_times.append(now)
        self.failures_in_row = 0
        self.retry_at = 0.0

    def refill_failed(self, now: float, sandbox_id: str | None = None) -> None:
        """A refill failed (its sandbox, if one was made, is deleted): back off."""
        self.refill_stopped(sandbox_id)
        self.failures_in_row += 1
        backoff = BACKOFF_BASE * 2 ** min(self.failures_in_row - 1, 10)
        self.retry_at = now + min(BACKOFF_MAX, backoff)

    def refill_stopped(self, sandbox_id: str | None = None) -> None:
        """A refill was cancelled (the pool halts); its sandbox, if any, is deleted."""
        self.in_flight -= 1
        if sandbox_id is not None:
            self.doom(sandbox_id)

    def deleted(self, sandbox_id: str) -> None:
        """A background delete finished (done or given up: the cluster deletes it at exit)."""
        self.deleting.discard(sandbox_id)
        self.doomed.discard(sandbox_id)

    def delete_stopped(self, sandbox_id: str) -> None:
        """A background delete was cancelled: the member stays doomed, for `idle`."""
        self.deleting.discard(sandbox_id)

    # ------------------------------------------------------------------ closing, figures

    def close(self) -> None:
        """Start nothing more."""
        self.closed = True

    def idle(self) -> list[str]:
        """Every member that is not handed out (ready, then doomed); forgotten from here on."""
        ids = self.ready_ids() + sorted(self.doomed)
        self.ready.clear()
        self.doomed.clear()
        self.deleting.clear()
        return ids

    def refill_rate(self, now: float) -> float:
        """Refills per second over the last `RATE_WINDOW` seconds (or since opened)."""
        while self._refill_times and self._refill_times[0] < now - RATE_WINDOW:
            self._refill_times.popleft()
        window = min(RATE_WINDOW, max(now - self.opened, 1e-3))
        return len(self._refill_times) / window


__all__ = ["Plan", "PoolPolicy"]
