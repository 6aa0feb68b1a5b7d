"""A sans-IO scheduler: which host each sandbox request goes to, and when.

This module owns the requests (ids, the queue, its order and fairness); the hosts, what they
hold and which one is best for a demand are its ledger's (`_capacity`), which knows nothing of
the queue. The rules of both, in one place:

Rules:
- A host offers `Resources`: cpus, memory (bytes) and at most `sandboxes` sandboxes (0 = no
  limit), and at most `max_starts` container starts in flight.
- A placement holds its demand's cpus, memory and one sandbox slot until `start_failed` or
  `release`; it holds one start slot until `started` or `start_failed`. Cpus are counted in
  integer nano-cpus (as Docker does), so no sum of floats drifts into over-commit.
- Admission: a demand that no host could ever hold (total capacity of every host, draining or
  not) raises `CapacityError` at once, naming the demand and the largest host. A request id in
  use raises `AlreadyExists` (a `BadRequest`). A request that cannot be placed now waits in a
  queue of at most `max_queue`; when the queue is full it raises `CapacityError`.
- Queue order: first come, first served, with bounded bypass. When the oldest waiting request
  does not fit, later ones that fit may pass it, but only `max_bypass` times; after that,
  nothing is placed until the oldest is (`max_bypass=0` is strict FIFO). Requests with the same
  cpus and memory never pass each other. A request that only a removed host could hold keeps
  its place; the driver cancels it when it gives up waiting.
- Eligible hosts: not draining, below their start cap and their sandbox limit, with the free
  cpus and memory. Among them, hosts that already have the demand's image come first; then
  `spread` picks the lowest dominant share after placing (the largest fraction used of cpus,
  memory or sandbox slots), `binpack` the highest; ties go to fewer starts in flight, then to
  the smaller host id.
- Settled queue: after every call, nothing waiting could be placed under these rules. Every
  call that can make room returns the `Place` actions it made, in the order made.
- A host whose container started is taken to have its image (`started` records it).
- A host whose agent refuses a create as full (it counts other programs' sandboxes and starts
  too) is kept off: `host_refused` closes it and says how long until `host_reopened` may try it
  again (`FULL_BACKOFF` seconds, doubled with each refusal in a row, at most
  `FULL_BACKOFF_MAX`); reopened, it takes one placement at a time until a start there
  succeeds. A closed host counts as no room (`has_room`, `startable`).
- `adopt` records a sandbox that already runs on a host (found there after a reconnect or by
  an owner that came back): it holds its resources at once, with no start slot, even when
  that over-commits the host (it exists; refusing it would not free anything).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal, TypeAlias

import msgspec

from ._capacity import NANO, Demand, HostStatistics, Ledger, Placement, Resources, nano
from ._errors import AlreadyExists, BadRequest, CapacityError, NotFound

FULL_BACKOFF = 0.1  # seconds a host that said full is kept off, after its first refusal
FULL_BACKOFF_MAX = 2.0  # ... and at most, however many refusals in a row


class Place(msgspec.Struct, frozen=True, tag=True):
    """Create the request's container on this host now."""

    request_id: str
    host_id: str


Action: TypeAlias = Place
"""Everything the scheduler asks its driver to do (a union as soon as there is a second kind)."""


class QueuedRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request waiting in the queue: what it needs, and since when (the `now` of `submit`)."""

    request_id: str
    demand: Demand
    since: float


class SchedulerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the scheduler: hosts by id, current counts and running totals."""

    hosts: tuple[HostStatistics, ...]
    queue_depth: int
    placed: int
    starting: int
    placements: int
    rejections: int
    oldest_queued_since: float | None


class _Queued:
    __slots__ = ("bypassed", "cpus", "image", "memory", "request_id", "seq", "since")

    def __init__(
        self, request_id: str, cpus: int, memory: int, image: str, seq: int, since: float
    ) -> None:
        self.request_id = request_id
        self.cpus = cpus
        self.memory = memory
        self.image = image
        self.seq = seq
        self.since = since
        self.bypassed = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.cpus, self.memory)


class Scheduler:
    """Places sandbox requests on hosts; see the module's rules.

    Plain synchronous code: the caller reports events (with `now` where time matters) and
    performs the `Place` actions returned. Costs: a placement decision scans the eligible
    hosts once; an event that frees room tries each distinct (cpus, memory) shape waiting in
    the queue at most once, not each queued request.
    """

    def __init__(
        self,
        policy: Literal["spread", "binpack"] = "spread",
        max_queue: int = 10_000,
        default_max_starts: int = 8,
        *,
        max_bypass: int = 32,
    ) -> None:
        if policy not in ("spread", "binpack"):
            raise BadRequest(f"unknown placement policy {policy!r}: use 'spread' or 'binpack'")
        if max_queue < 0 or max_bypass < 0:
            raise BadRequest(
                f"max_queue and max_bypass must be >= 0, got {max_queue} and {max_bypass}"
            )
        if default_max_starts < 1:
            raise BadRequest(f"default_max_starts must be >= 1, got {default_max_starts}")
        self._ledger = Ledger(spread=policy == "spread")
        self._max_queue = max_queue
        self._max_bypass = max_bypass
        self._default_max_starts = default_max_starts
        self._queued: dict[str, _Queued] = {}
        # The queue, split by shape: within a shape FIFO order is also fit order.
        self._groups: dict[tuple[int, int], OrderedDict[str, _Queued]] = {}
        self._seq = itertools.count()
        self._placements_made = 0
        self._rejections = 0

    # ------------------------------------------------------------------------------ hosts

    def add_host(
        self,
        host_id: str,
        capacity: Resources,
        *,
        max_starts: int | None = None,
        images: Iterable[str] = (),
        host_max_starts: int = 0,
    ) -> list[Action]:
        """Add a host; return the placements its room made possible. `host_max_starts` is the
        host's own start cap (its agent's, 0: none): the host takes the smaller one."""
        starts = self._default_max_starts if max_starts is None else max_starts
        if host_max_starts > 0:
            starts = min(starts, host_max_starts)
        self._ledger.add_host(host_id, capacity, starts, images)
        return self._settle()

    def remove_host(self, host_id: str) -> list[str]:
        """Forget a host; return the ids of the placements that were on it, sorted.

        Their resources go with the host. Queued requests stay queued, even those no remaining
        host could hold (the host may come back).
        """
        return self._ledger.remove_host(host_id)

    def drain_host(self, host_id: str, draining: bool = True) -> list[Action]:
        """Stop (or resume) placing on a host; its placements stay. Return new placements."""
        self._ledger.drain(host_id, draining)
        return self._settle()

    def host_refused(self, host_id: str, full: str) -> float:
        """The host's agent refused a create as full (`full` says what): keep off the host;
        return in how many seconds `host_reopened` may try it again."""
        refusals = self._ledger.refused(host_id, full)
        return min(FULL_BACKOFF_MAX, FULL_BACKOFF * (1 << min(refusals - 1, 16)))

    def host_reopened(self, host_id: str) -> list[Action]:
        """Try a host that said full again (one start at a time); return new placements."""
        self._ledger.reopen(host_id)
        return self._settle()

    def host_refusals(self, host_id: str) -> int:
        """How many creates in a row the host refused as full (0 once a start succeeded)."""
        return self._ledger.host(host_id).refusals

    def host_images(self, host_id: str, images: Iterable[str]) -> None:
        """Replace the set of images a host is known to have (placement prefers those)."""
        self._ledger.set_images(host_id, images)

    # --------------------------------------------------------------------------- requests

    def submit(self, request_id: str, demand: Demand, now: float) -> list[Action]:
        """Ask for a placement: return `[Place]` now, or `[]` if it waits in the queue."""
        self._check_new(request_id)
        if not (math.isfinite(demand.cpus) and demand.cpus >= 0 and demand.memory >= 0):
            raise BadRequest(f"request {request_id!r} has an invalid demand: {demand}")
        entry = _Queued(
            request_id, nano(demand.cpus), demand.memory, demand.image, next(self._seq), now
        )
        if not self._ledger.could_ever_hold(entry.cpus, entry.memory):
            self._rejections += 1
            raise CapacityError(
                f"no host can ever hold request {request_id!r}"
                f" (cpus={demand.cpus:g}, memory={demand.memory}): {self._ledger.largest()}",
                request_id=request_id,
            )
        # Same-shape requests already waiting do not fit (the queue is settled): skip the try.
        waiting = entry.shape in self._groups
        self._enqueue(entry)
        actions = [] if waiting else self._settle(only=entry.shape)
        if len(self._queued) > self._max_queue:  # only the new request can overflow it
            self._dequeue(entry)
            self._rejections += 1
            raise CapacityError(
                f"queue full (max_queue={self._max_queue}): request {request_id!r} rejected",
                request_id=request_id,
            )
        return actions

    def started(self, request_id: str, now: float) -> list[Action]:
        """The request's container started: free its start slot. Return new placements."""
        self._ledger.started(self._starting(request_id, "marked started"))
        return self._settle()

    def start_failed(self, request_id: str, now: float) -> list[Action]:
        """The request's container did not start: free everything it held."""
        self._starting(request_id, "marked start-failed")
        self._ledger.unplace(request_id)
        return self._settle()

    def release(self, request_id: str, now: float) -> list[Action]:
        """The request's sandbox is gone: free everything it held. Return new placements."""
        self._placed(request_id, "released")
        self._ledger.unplace(request_id)
        return self._settle()

    def adopt(self, request_id: str, host_id: str, demand: Demand) -> None:
        """Count a sandbox that already exists on `host_id` against that host."""
        self._check_new(request_id)
        self._ledger.adopt(request_id, host_id, demand)

    def cancel(self, request_id: str) -> list[Action]:
        """Withdraw a queued request. Return the placements its departure made possible."""
        entry = self._queued.get(request_id)
        if entry is None:
            placement = self._ledger.placements.get(request_id)
            if placement is None:
                raise _unknown(request_id, "cancelled")
            raise BadRequest(
                f"request {request_id!r} cannot be cancelled: it is placed on host"
                f" {placement.host.host_id!r} (release it instead)"
            )
        self._dequeue(entry)
        return self._settle()

    def queued(self) -> tuple[QueuedRequest, ...]:
        """Every request waiting in the queue, oldest first (apart from `statistics`, which
        stays cheap however long the queue grows)."""
        entries = sorted(self._queued.values(), key=_seq)
        return tuple(
            QueuedRequest(
                request_id=q.request_id,
                demand=Demand(q.cpus / NANO, q.memory, q.image),
                since=q.since,
            )
            for q in entries
        )

    def has_room(self, demand: Demand, request_id: str | None = None) -> bool:
        """True when a host that takes placements (not draining, below its sandbox limit) has
        the free cpus and memory for `demand` now, start slots aside: a request of it that
        waits only waits for its turn.

        With `request_id` (a queued request of `demand`), also False while the bypass rule
        holds that request back for good: the oldest waiting request was passed `max_bypass`
        times and no host has room for it either, so nothing younger is placed until it is
        (it may wait for a host that never comes)."""
        ledger = self._ledger
        if not ledger.fits_somewhere(nano(demand.cpus), demand.memory):
            return False
        entry = None if request_id is None else self._queued.get(request_id)
        if entry is None:
            return True
        oldest = min((next(iter(g.values())) for g in self._groups.values()), key=_seq)
        return (
            oldest is entry
            or oldest.bypassed < self._max_bypass
            or ledger.fits_somewhere(oldest.cpus, oldest.memory)
        )

    def startable(self, demand: Demand) -> int:
        """How many creates of `demand` could start right now, over all hosts, with nobody
        waiting in the queue (0 while anyone waits: queued creates go first). Draining hosts
        count for nothing; each other host for the least of its free start slots, sandbox
        slots, cpus and memory, in units of `demand`."""
        if self._queued:
            return 0
        return self._ledger.startable(demand)

    def is_queued(self, request_id: str) -> bool:
        """True while the request waits in the queue (submitted, not yet placed)."""
        return request_id in self._queued

    def statistics(self) -> SchedulerStatistics:
        """A snapshot of hosts (sorted by id), queue and totals."""
        hosts = self._ledger.hosts
        oldest = min((q.since for q in self._queued.values()), default=None)
        return SchedulerStatistics(
            hosts=tuple(hosts[h].statistics() for h in sorted(hosts)),
            queue_depth=len(self._queued),
            placed=len(self._ledger.placements),
            starting=sum(h.starting for h in hosts.values()),
            placements=self._placements_made,
            rejections=self._rejections,
            oldest_queued_since=oldest,
        )

    # ----------------------------------------------------------------------------- inside

    def _check_new(self, request_id: str) -> None:
        if request_id in self._queued or request_id in self._ledger.placements:
            where = "queued" if request_id in self._queued else "placed"
            raise AlreadyExists(f"request {request_id!r} is already {where}")

    def _placed(self, request_id: str, done: str) -> Placement:
        placement = self._ledger.placements.get(request_id)
        if placement is not None:
            return placement
        if request_id in self._queued:
            raise BadRequest(
                f"request {request_id!r} cannot be {done}: it is queued, not placed"
                " (cancel it instead)"
            )
        raise _unknown(request_id, done)

    def _starting(self, request_id: str, done: str) -> Placement:
        placement = self._placed(request_id, done)
        if not placement.starting:
            raise BadRequest(f"request {request_id!r} cannot be {done}: it has already started")
        return placement

    def _enqueue(self, entry: _Queued) -> None:
        self._queued[entry.request_id] = entry
        self._groups.setdefault(entry.shape, OrderedDict())[entry.request_id] = entry

    def _dequeue(self, entry: _Queued) -> None:
        del self._queued[entry.request_id]
        group = self._groups[entry.shape]
        del group[entry.request_id]
        if not group:
            del self._groups[entry.shape]

    def _settle(self, only: tuple[int, int] | None = None) -> list[Action]:
        """Place what the rules allow, oldest shape first; `only` limits the shapes tried."""
        actions: list[Action] = []
        blocked: set[tuple[int, int]] = set()
        ledger = self._ledger
        while ledger.open and self._queued:
            oldest: _Queued | None = None
            candidate: _Queued | None = None
            for shape, group in self._groups.items():
                head = next(iter(group.values()))
                if oldest is None or head.seq < oldest.seq:
                    oldest = head
                if shape in blocked or (only is not None and shape != only):
                    continue
                if candidate is None or head.seq < candidate.seq:
                    candidate = head
            if candidate is None or oldest is None:
                break
            if candidate is not oldest and oldest.bypassed >= self._max_bypass:
                break
            host = ledger.choose(candidate.cpus, candidate.memory, candidate.image)
            if host is None:
                blocked.add(candidate.shape)
                continue
            if candidate is not oldest:
                oldest.bypassed += 1
            self._dequeue(candidate)
            ledger.place(
                candidate.request_id, host, candidate.cpus, candidate.memory, candidate.image
            )
            self._placements_made += 1
            actions.append(Place(candidate.request_id, host.host_id))
        return actions


def _seq(entry: _Queued) -> int:
    return entry.seq


def _unknown(request_id: str, done: str) -> NotFound:
    return NotFound(
        f"request {request_id!r} cannot be {done}: no such request"
        " (never submitted, or already gone)"
    )


__all__ = [
    "Action",
    "Demand",
    "HostStatistics",
    "Place",
    "QueuedRequest",
    "Resources",
    "Scheduler",
    "SchedulerStatistics",
]
