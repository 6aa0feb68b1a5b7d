"""The scheduler's ledger of hosts: what each offers, what each holds, and which host is best
for a demand. It knows nothing of the queue or its order (`_scheduler` does).

Rules:
- A host offers `Resources`: cpus, memory (bytes) and at most `sandboxes` sandboxes (0 = no
  limit), and at most `max_starts` container starts in flight.
- A placement holds its cpus, memory and one sandbox slot until it is unplaced, and one start
  slot until `started` (or until unplaced). Cpus are integer nano-cpus (as Docker counts
  them), so no sum of floats drifts into over-commit.
- Eligible hosts: not draining, below their start cap and their sandbox limit, with the free
  cpus and memory. Among them, hosts that already have the demand's image come first; then
  `spread` picks the lowest dominant share after placing (the largest fraction used of cpus,
  memory or sandbox slots), `binpack` the highest; ties go to fewer starts in flight, then to
  the smaller host id. `_host_index` keeps the open hosts in that order.
- A host whose container started is taken to have its image.
- An adopted placement holds its resources at once, with no start slot, even when that
  over-commits the host.
- A host whose agent refused a create as full (`refused`: other programs use it too) takes no
  placement until `reopen`, then one at a time ("probing") until a start there succeeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from ._errors import AlreadyExists, BadRequest, NotFound
from ._host_index import HostIndex

NANO = 1_000_000_000


class Resources(msgspec.Struct, frozen=True):
    """What a host offers: cpus, memory in bytes, and a sandbox count limit (0 = none)."""

    cpus: float
    memory: int
    sandboxes: int = 0


class Demand(msgspec.Struct, frozen=True):
    """What one sandbox needs: cpus, memory in bytes, and the image it runs (for locality)."""

    cpus: float
    memory: int
    image: str = ""


class HostStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One host's state: `used.sandboxes` is the number of sandboxes placed on it."""

    host_id: str
    capacity: Resources
    used: Resources
    starting: int
    max_starts: int
    draining: bool
    images: tuple[str, ...]
    full: str = ""  # what its agent said is full, while this ledger keeps off it
    probing: bool = False  # reopened after `full`: one start at a time until one succeeds


def nano(cpus: float) -> int:
    """Cpus as integer nano-cpus."""
    return round(cpus * NANO)


class Host:
    """One host's capacity and holdings (the ledger's row)."""

    __slots__ = (
        "capacity",
        "cpus",
        "draining",
        "full",
        "host_id",
        "images",
        "limit",
        "max_starts",
        "memory",
        "probing",
        "refusals",
        "requests",
        "starting",
        "used_cpus",
        "used_memory",
    )

    def __init__(
        self, host_id: str, capacity: Resources, max_starts: int, images: Iterable[str]
    ) -> None:
        self.host_id = host_id
        self.capacity = capacity
        self.cpus = nano(capacity.cpus)
        self.memory = capacity.memory
        self.limit = capacity.sandboxes
        self.max_starts = max_starts
        self.images = set(images)
        self.draining = False
        self.full = ""  # what its agent last said is full ("" once reopened)
        self.probing = False
        self.refusals = 0  # refusals since the last start that succeeded here
        self.used_cpus = 0
        self.used_memory = 0
        self.starting = 0
        self.requests: set[str] = set()

    def is_open(self) -> bool:
        return (
            not self.draining
            and not self.full
            and self.starting < (1 if self.probing else self.max_starts)
            and (self.limit == 0 or len(self.requests) < self.limit)
        )

    def statistics(self) -> HostStatistics:
        used = Resources(self.used_cpus / NANO, self.used_memory, len(self.requests))
        return HostStatistics(
            host_id=self.host_id,
            capacity=self.capacity,
            used=used,
            starting=self.starting,
            max_starts=self.max_starts,
            draining=self.draining,
            images=tuple(sorted(self.images)),
            full=self.full,
            probing=self.probing,
        )


class Placement:
    """What one placed request holds on its host."""

    __slots__ = ("cpus", "host", "image", "memory", "starting")

    def __init__(self, host: Host, cpus: int, memory: int, image: str, starting: bool) -> None:
        self.host = host
        self.cpus = cpus
        self.memory = memory
        self.image = image
        self.starting = starting


class Ledger:
    """Hosts and the placements they hold; see the module's rules. The caller (the
    scheduler) checks request ids and their states before it calls in."""

    def __init__(self, spread: bool) -> None:
        self.spread = spread
        self.hosts: dict[str, Host] = {}
        self.open: dict[str, Host] = {}  # hosts that can take a placement of some size
        self.placements: dict[str, Placement] = {}
        self.index = HostIndex[Host](spread)  # the open hosts in placement order, per shape
        self._ever: dict[tuple[int, int], bool] = {}  # could_ever_hold, until hosts change

    # ------------------------------------------------------------------ hosts

    def add_host(
        self, host_id: str, capacity: Resources, max_starts: int, images: Iterable[str]
    ) -> None:
        if host_id in self.hosts:
            raise AlreadyExists(f"host {host_id!r} is already known")
        if max_starts < 1:
            raise BadRequest(f"max_starts for host {host_id!r} must be >= 1, got {max_starts}")
        if (
            not (math.isfinite(capacity.cpus) and capacity.cpus >= 0)
            or min(capacity.memory, capacity.sandboxes) < 0
        ):
            raise BadRequest(f"host {host_id!r} has an invalid capacity: {capacity}")
        host = Host(host_id, capacity, max_starts, images)
        self.hosts[host_id] = host
        self._ever.clear()
        self._refresh(host)

    def host(self, host_id: str) -> Host:
        try:
            return self.hosts[host_id]
        except KeyError:
            raise NotFound(f"no host {host_id!r}") from None

    def remove_host(self, host_id: str) -> list[str]:
        """Forget a host and its placements; return their ids, sorted."""
        host = self.host(host_id)
        for request_id in host.requests:
            del self.placements[request_id]
        del self.hosts[host_id]
        self._ever.clear()
        self.open.pop(host_id, None)
        self.index.removed(host_id)
        return sorted(host.requests)

    def drain(self, host_id: str, draining: bool) -> None:
        host = self.host(host_id)
        host.draining = draining
        self._refresh(host)

    def refused(self, host_id: str, full: str) -> int:
        """The host's agent refused a create: `full` names what. Keep off the host until
        `reopen`; return how many refusals in a row it gave."""
        host = self.host(host_id)
        host.full = full or "full"
        host.probing = False
        host.refusals += 1
        self._refresh(host)
        return host.refusals

    def reopen(self, host_id: str) -> None:
        """Try the host again after a refusal, one start at a time until one succeeds."""
        host = self.host(host_id)
        host.full = ""
        host.probing = True
        self._refresh(host)

    def set_images(self, host_id: str, images: Iterable[str]) -> None:
        host = self.host(host_id)
        host.images = set(images)
        self._refresh(host)

    # ------------------------------------------------------------------ placements

    def place(self, request_id: str, host: Host, cpus: int, memory: int, image: str) -> None:
        """Hold a demand on `host`, with a start slot."""
        self._hold(request_id, Placement(host, cpus, memory, image, starting=True))
        host.starting += 1
        self._refresh(host)

    def adopt(self, request_id: str, host_id: str, demand: Demand) -> None:
        """Hold a demand that already runs on `host_id` (no start slot; may over-commit)."""
        host = self.host(host_id)
        self._hold(
            request_id,
            Placement(host, nano(demand.cpus), demand.memory, demand.image, starting=False),
        )
        if demand.image:
            host.images.add(demand.image)
        self._refresh(host)

    def _hold(self, request_id: str, placement: Placement) -> None:
        host = placement.host
        self.placements[request_id] = placement
        host.requests.add(request_id)
        host.used_cpus += placement.cpus
        host.used_memory += placement.memory

    def started(self, placement: Placement) -> None:
        """Its container started: free its start slot; its host has its image."""
        placement.starting = False
        host = placement.host
        host.starting -= 1
        if not host.full:  # while closed, its reopening waits on the refusal count
            host.probing = False
            host.refusals = 0
        if placement.image:
            host.images.add(placement.image)
        self._refresh(host)

    def unplace(self, request_id: str) -> None:
        """Free everything the placement held."""
        placement = self.placements.pop(request_id)
        host = placement.host
        host.requests.discard(request_id)
        host.used_cpus -= placement.cpus
        host.used_memory -= placement.memory
        if placement.starting:
            host.starting -= 1
        self._refresh(host)

    def _refresh(self, host: Host) -> None:
        is_open = host.is_open()
        if is_open:
            self.open[host.host_id] = host
        else:
            self.open.pop(host.host_id, None)
        self.index.changed(host, is_open)

    # ------------------------------------------------------------------ questions

    def could_ever_hold(self, cpus: int, memory: int) -> bool:
        """Whether some host (draining or not) is large enough, empty. Kept per demand size
        until a host joins or leaves: every submit asks."""
        known = self._ever.get((cpus, memory))
        if known is None:
            known = any(h.cpus >= cpus and h.memory >= memory for h in self.hosts.values())
            if len(self._ever) >= 64:
                self._ever.clear()
            self._ever[cpus, memory] = known
        return known

    def fits_somewhere(self, cpus: int, memory: int) -> bool:
        """Whether a host that takes placements has the free cpus and memory (start slots
        aside)."""
        return any(
            not host.draining
            and not host.full
            and (host.limit == 0 or len(host.requests) < host.limit)
            and host.used_cpus + cpus <= host.cpus
            and host.used_memory + memory <= host.memory
            for host in self.hosts.values()
        )

    def startable(self, demand: Demand) -> int:
        """How many placements of `demand` the hosts could start now, summed over hosts."""
        cpus = nano(demand.cpus)
        free = 0
        for host in self.hosts.values():
            if host.draining or host.full:
                continue
            room = [(1 if host.probing else host.max_starts) - host.starting]
            if host.limit:
                room.append(host.limit - len(host.requests))
            if cpus > 0:
                room.append((host.cpus - host.used_cpus) // cpus)
            if demand.memory > 0:
                room.append((host.memory - host.used_memory) // demand.memory)
            free += max(0, min(room))
        return free

    def largest(self) -> str:
        """The largest host(s), for an error message."""
        if not self.hosts:
            return "there are no hosts"
        hosts = sorted(self.hosts.values(), key=lambda h: h.host_id)
        by_cpus = max(hosts, key=lambda h: h.cpus)
        by_memory = max(hosts, key=lambda h: h.memory)
        if by_cpus is by_memory or by_cpus.memory == by_memory.memory:
            c = by_cpus.capacity
            return f"the largest host is {by_cpus.host_id!r} (cpus={c.cpus:g}, memory={c.memory})"
        return (
            f"the most cpus is {by_cpus.capacity.cpus:g} on {by_cpus.host_id!r},"
            f" the most memory is {by_memory.memory} on {by_memory.host_id!r}"
        )

    def choose(self, cpus: int, memory: int, image: str) -> Host | None:
        """The best eligible host: image first, then the dominant share after placing (the
        largest fraction used of cpus, memory or sandbox slots), then starts in flight, then
        host id. Kept in that order by `_host_index`: O(log hosts) per placement."""
        return self.index.best(cpus, memory, image)


__all__ = ["NANO", "Demand", "Host", "HostStatistics", "Ledger", "Placement", "Resources", "nano"]
