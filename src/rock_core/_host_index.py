"""The ledger's hosts kept in placement order, per demand shape, so a placement costs
O(log hosts) instead of a scan of every host.

Rules:
- The order is `_capacity`'s: hosts that have the demand's image first, then the dominant
  share after placing (lowest first for `spread`, highest for `binpack`), then fewer starts in
  flight, then the smaller host id. `rank` computes it, the one place it is written.
- One heap per demand shape (nano-cpus, memory, image), made the first time that shape is
  placed, from the open hosts. A host that changes (placed on, started, unplaced, drained, new
  images) gets a new version; the ledger calls `changed`, which pushes one new entry per shape
  if the host is open and fits that shape. An entry whose version is not its host's current
  one is stale and is dropped when it reaches the top, so the top fresh entry is always the
  best host: a host's fit and rank change only when it changes.
- At most `MAX_SHAPES` shapes are indexed (the least recently used goes). A heap that grows
  past `REBUILD_FACTOR` times the number of open hosts (stale entries, as in a shape not
  placed lately) is rebuilt when it does, so no heap grows without bound.
- Pure bookkeeping, no I/O and no clocks; the scheduler's tests and its model test cover it
  (the model checks every decision against a plain scan).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Container, Iterable, Sized
from typing import Generic, Protocol, TypeVar

MAX_SHAPES = 16
REBUILD_FACTOR = 4


class Rankable(Protocol):
    """What the index reads of a host (`_capacity.Host` is one)."""

    @property
    def host_id(self) -> str: ...
    @property
    def cpus(self) -> int: ...
    @property
    def memory(self) -> int: ...
    @property
    def limit(self) -> int: ...
    @property
    def used_cpus(self) -> int: ...
    @property
    def used_memory(self) -> int: ...
    @property
    def starting(self) -> int: ...
    @property
    def images(self) -> Container[str]: ...
    @property
    def requests(self) -> Sized: ...


Host = TypeVar("Host", bound=Rankable)
Shape = tuple[int, int, str]  # nano-cpus, memory, image
Rank = tuple[bool, float, int, str]  # image missing, share (negated for binpack), starting, id
Entry = tuple[bool, float, int, str, int]  # a rank, then the host's version when pushed


def rank(host: Rankable, cpus: int, memory: int, image: str, spread: bool) -> Rank | None:
    """Where `host` stands for a demand (lower is better), or None if the demand does not fit
    its free cpus and memory. The host's open state (draining, slots) is the caller's."""
    used_cpus = host.used_cpus + cpus
    used_memory = host.used_memory + memory
    if used_cpus > host.cpus or used_memory > host.memory:
        return None
    share = used_cpus / host.cpus if host.cpus else 0.0
    if host.memory:
        share = max(share, used_memory / host.memory)
    if host.limit:
        share = max(share, (len(host.requests) + 1) / host.limit)
    missing = bool(image) and image not in host.images
    return (missing, share if spread else -share, host.starting, host.host_id)


class HostIndex(Generic[Host]):
    """Open hosts in placement order for each demand shape placed recently (see the rules)."""

    def __init__(self, spread: bool) -> None:
        self.spread = spread
        self._versions: dict[str, int] = {}  # host id -> current version (absent: removed)
        self._hosts: dict[str, Host] = {}  # open hosts
        self._heaps: OrderedDict[Shape, list[Entry]] = OrderedDict()
        self._counter = itertools.count(1)

    def changed(self, host: Host, is_open: bool) -> None:
        """`host` changed (or joined): give it a new version and re-rank it where it fits."""
        version = next(self._counter)
        self._versions[host.host_id] = version
        if not is_open:
            self._hosts.pop(host.host_id, None)
            return
        self._hosts[host.host_id] = host
        limit = REBUILD_FACTOR * len(self._hosts) + 64
        for shape, heap in self._heaps.items():
            placed = rank(host, *shape, self.spread)
            if placed is None:
                continue
            heapq.heappush(heap, (*placed, version))
            if len(heap) > limit:  # mostly stale: a shape not placed lately, say
                self._fill(heap, shape)

    def removed(self, host_id: str) -> None:
        """`host_id` left: every entry of it is stale."""
        self._versions.pop(host_id, None)
        self._hosts.pop(host_id, None)

    def sizes(self) -> dict[Shape, int]:
        """How many entries each indexed shape's heap holds, fresh and stale."""
        return {shape: len(heap) for shape, heap in self._heaps.items()}

    def best(self, cpus: int, memory: int, image: str) -> Host | None:
        """The best open host for the shape, or None if none has room."""
        shape = (cpus, memory, image)
        heap = self._heaps.get(shape)
        if heap is None:
            heap = self._build(shape)
        else:
            self._heaps.move_to_end(shape)
        versions = self._versions
        while heap:
            top = heap[0]
            if versions.get(top[3]) == top[4]:
                return self._hosts[top[3]]
            heapq.heappop(heap)
        return None

    def _build(self, shape: Shape) -> list[Entry]:
        heap: list[Entry] = []
        self._fill(heap, shape)
        self._heaps[shape] = heap
        if len(self._heaps) > MAX_SHAPES:
            self._heaps.popitem(last=False)
        return heap

    def _fill(self, heap: list[Entry], shape: Shape) -> None:
        """Make `heap` hold exactly one fresh entry per open host that fits `shape`."""
        heap[:] = self._entries(shape, self._hosts.values())
        heapq.heapify(heap)

    def _entries(self, shape: Shape, hosts: Iterable[Host]) -> Iterable[Entry]:
        for host in hosts:
            placed = rank(host, *shape, self.spread)
            if placed is not None:
                yield (*placed, self._versions[host.host_id])


__all__ = ["MAX_SHAPES", "REBUILD_FACTOR", "HostIndex", "rank"]
