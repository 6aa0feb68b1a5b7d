"""Snapshots a cluster reports: the scheduler's view plus every open warm pool.

Plain data, so `_cluster` (which reports them) and `_pool` (which fills in a pool's part) both
import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ._errors import NotFound
from ._scheduler import QueuedRequest, SchedulerStatistics


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One warm pool: what it holds now and what it has done since it opened.

    - `size` = `ready` + `in_flight`: the sandboxes the pool holds (never above `max_size`).
    - `ready`: running members waiting to be handed out; `in_flight`: refills being created.
    - `target`: how many the pool refills to now, between `min_size` and `max_size` (it grows
      with misses and shrinks back after `shrink_after` seconds without one).
    - `handed_out`: members acquired and not yet released or deleted.
    - `hits` / `misses`: acquires served from `ready` / by a cold start.
    - `refills`: members made in the background; `refill_rate` the refills per second over
      the last minute; `failures` the refills (and resets) that did not give a ready member,
      `last_error` the latest reason.
    - `resets`: released members restarted and put back; `discarded`: ready members found not
      running (their container died, their host was lost) and removed.
    """

    name: str
    image: str
    min_size: int
    max_size: int
    target: int
    size: int
    ready: int
    in_flight: int
    handed_out: int
    hits: int
    misses: int
    refills: int
    refill_rate: float
    failures: int
    resets: int
    discarded: int
    last_error: str

    @property
    def hit_rate(self) -> float:
        """Hits over all acquires so far (0.0 before the first acquire)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class QueuedCreate(msgspec.Struct, frozen=True, kw_only=True):
    """A create waiting for room on a host: what it needs and how long it has waited (s)."""

    sandbox_id: str
    cpus: float
    memory: int
    image: str
    waited: float


class ClusterStatistics(SchedulerStatistics, frozen=True, kw_only=True):
    """A cluster's snapshot: every field of `SchedulerStatistics`, its open pools by name, and
    the creates waiting in its queue (`queued`, oldest first)."""

    pools: tuple[PoolStatistics, ...] = ()
    queued: tuple[QueuedCreate, ...] = ()

    @classmethod
    def of(
        cls,
        scheduler: SchedulerStatistics,
        pools: Iterable[PoolStatistics],
        queued: Iterable[QueuedRequest] = (),
        now: float = 0.0,
    ) -> ClusterStatistics:
        """The scheduler's snapshot with `pools` added (sorted by name), and its `queued`
        requests with the seconds each has waited at `now` (the clock of their `since`)."""
        return cls(
            **msgspec.structs.asdict(scheduler),
            pools=tuple(sorted(pools, key=lambda p: p.name)),
            queued=tuple(
                QueuedCreate(
                    sandbox_id=q.request_id,
                    cpus=q.demand.cpus,
                    memory=q.demand.memory,
                    image=q.demand.image,
                    waited=max(0.0, now - q.since),
                )
                for q in queued
            ),
        )

    def pool(self, name: str) -> PoolStatistics:
        """The statistics of the open pool `name`; `NotFound` if there is none."""
        for stats in self.pools:
            if stats.name == name:
                return stats
        raise NotFound(f"no open pool named {name!r} (open: {[p.name for p in self.pools]})")
