"""What room the hosts have for a demand, and why a request waits for a host.

Pure functions of the scheduler's statistics (no clock, no I/O): the cluster's log line for a
create that starts waiting and its `CapacityError` when the wait gives up are built here and
tested as plain calls.

Rules:
- A host's free room is its capacity less what this cluster's placements hold. The scheduler
  counts nothing else: sandboxes of other owners and the engine's own limits are not seen,
  except that a host whose agent said it is full (`full`: other programs use it) takes no
  placement until the cluster tries it again.
- A host takes placements when it is not draining, not said full, and below its sandbox
  limit. Its start slots do not count: a start in flight frees its slot by itself.
- Why a request waits (`Room.blocker`), first match wins:
  ``no-hosts`` (the scheduler has no host), ``draining`` (every host is draining or away),
  ``room`` (no host that takes placements has the free cpus and memory), ``turn`` (one has: the
  request only waits for a start slot there, or for older requests to go first).
- What would fit now (`Room.largest`): the host that takes placements with the most free cpus
  (then memory, then the smaller id), if it could hold the smallest valid sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import msgspec

from ._scheduler import Demand, HostStatistics, Resources, SchedulerStatistics
from ._schema import Cpus, Memory

MIN_CPUS: float = get_args(Cpus)[1].ge
MIN_MEMORY: int = get_args(Memory)[1].ge

Blocker = Literal["no-hosts", "draining", "room", "turn"]


class HostRoom(msgspec.Struct, frozen=True, kw_only=True):
    """One host seen from a demand: what it has, what this cluster holds there, what is free.

    `away` says why the cluster drained it itself (for example its link is down); empty for a
    host the user drained (`draining`) or one that takes placements.
    """

    host_id: str
    capacity: Resources
    held: Resources
    free_cpus: float
    free_memory: int
    draining: bool
    away: str = ""
    starting: int
    max_starts: int
    at_limit: bool
    full: str = ""  # what its agent said is full (other programs use it), while kept off

    @property
    def takes_placements(self) -> bool:
        """Not draining, not said full, and below its sandbox limit."""
        return not self.draining and not self.at_limit and not self.full

    def fits(self, demand: Demand) -> bool:
        """The demand fits in the free room now (start slots aside)."""
        return (
            self.takes_placements
            and self.free_cpus + 1e-9 >= demand.cpus
            and self.free_memory >= demand.memory
        )


class Room(msgspec.Struct, frozen=True, kw_only=True):
    """Every host seen from one demand (sorted by id); see the module's rules."""

    demand: Demand
    hosts: tuple[HostRoom, ...]

    @property
    def blocker(self) -> Blocker:
        """Why a request of this demand waits; see the module's rules."""
        if not self.hosts:
            return "no-hosts"
        if all(not h.takes_placements and (h.draining or h.away) for h in self.hosts):
            return "draining"
        if any(h.fits(self.demand) for h in self.hosts):
            return "turn"
        return "room"

    @property
    def largest(self) -> HostRoom | None:
        """The host where the largest sandbox would fit now, if any sandbox fits anywhere."""
        open_hosts = [
            h
            for h in self.hosts
            if h.takes_placements and h.free_cpus >= MIN_CPUS and h.free_memory >= MIN_MEMORY
        ]
        if not open_hosts:
            return None
        return min(open_hosts, key=lambda h: (-h.free_cpus, -h.free_memory, h.host_id))


def room_for(
    stats: SchedulerStatistics, demand: Demand, away: Mapping[str, str] | None = None
) -> Room:
    """The room of every host of `stats` for `demand`; `away` names the hosts the driver
    drained itself, with why (a host the user drained is just `draining`)."""
    return Room(
        demand=demand,
        hosts=tuple(_host_room(h, (away or {}).get(h.host_id, "")) for h in stats.hosts),
    )


def _host_room(host: HostStatistics, away: str) -> HostRoom:
    capacity, used = host.capacity, host.used
    return HostRoom(
        host_id=host.host_id,
        capacity=capacity,
        held=used,
        free_cpus=max(0.0, round(capacity.cpus - used.cpus, 3)),
        free_memory=max(0, capacity.memory - used.memory),
        draining=host.draining,
        away=away,
        starting=host.starting,
        max_starts=host.max_starts,
        at_limit=bool(capacity.sandboxes) and used.sandboxes >= capacity.sandboxes,
        full=host.full,
    )


# ---------------------------------------------------------------------------- words


def size(n: int) -> str:
    """Bytes for people: ``1 GiB``, ``13.6 GiB``, ``512 MiB``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{round(n / scale, 1):g} {unit}"
    return f"{n} B"


def cpus(n: float) -> str:
    """Cpus for people: ``1 cpu``, ``0.5 cpus``."""
    return f"{round(n, 3):g} cpu" + ("" if n == 1 else "s")


def needs(demand: Demand) -> str:
    """What a demand asks for: ``1 cpu and 1 GiB``."""
    return f"{cpus(demand.cpus)} and {size(demand.memory)}"


def describe_host(host: HostRoom) -> str:
    """One host: its size, what this cluster holds there, what is free, and its state."""
    held = host.held
    sandboxes = f"{held.sandboxes} sandbox" + ("" if held.sandboxes == 1 else "es")
    text = (
        f"host {host.host_id} ({cpus(host.capacity.cpus)}, {size(host.capacity.memory)}):"
        f" this cluster holds {sandboxes} ({cpus(held.cpus)}, {size(held.memory)}),"
        f" free {cpus(host.free_cpus)} and {size(host.free_memory)}"
    )
    if host.away:
        return f"{text}, {host.away}"
    if host.draining:
        return f"{text}, draining"
    if host.full:
        return f"{text}, its agent says its {host.full} are full (other programs use it too)"
    if host.at_limit:
        return f"{text}, at its limit of {host.capacity.sandboxes} sandboxes"
    if host.starting >= host.max_starts:
        return f"{text}, {host.starting} starts in flight (its most)"
    return text


def explain(room: Room) -> str:
    """Why a request of `room.demand` waits, what holds the hosts, and what would fit now."""
    blocker = room.blocker
    if blocker == "no-hosts":
        return "the cluster has no host (every host was lost)"
    hosts = "; ".join(describe_host(h) for h in room.hosts)
    if blocker == "draining":
        drained = [h.host_id for h in room.hosts if h.draining and not h.away]
        if drained:
            return (
                f"all hosts are draining: undrain one with drain_host({drained[0]!r}, False)"
                f" ({hosts})"
            )
        return f"no host takes placements now ({hosts})"
    if blocker == "turn":
        return f"a host has room; it waits for a start slot or for older requests ({hosts})"
    largest = room.largest
    fit = (
        "nothing fits now on any host"
        if largest is None
        else (
            f"a sandbox of at most {cpus(largest.free_cpus)} and {size(largest.free_memory)}"
            f" would fit now on host {largest.host_id}"
        )
    )
    return (
        f"{hosts}. Only this cluster's sandboxes are counted: other owners' and the engine's"
        f" own limits are not. {fit[0].upper()}{fit[1:]}"
    )


__all__ = ["HostRoom", "Room", "describe_host", "explain", "needs", "room_for", "size"]
