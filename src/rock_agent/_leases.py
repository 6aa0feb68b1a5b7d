"""Owner leases: how long an agent keeps the sandboxes of an owner it no longer hears from.

Rules (plain synchronous code; the caller passes `now`, a monotonic time in seconds):
- Every owner with sandboxes on this host holds a lease. While the owner has a connection
  open, its lease cannot expire; each message renews it to `now + lease`.
- When the owner's last connection ends, the lease runs from its last renewal. An owner that
  reconnects before it ends finds its sandboxes as it left them (and may adopt them again).
- An owner first seen through its containers' labels (the agent restarted, or the owner never
  connected to this agent process) gets a full lease from the moment it is seen.
- A requested lease is granted within [`minimum`, `maximum`]; `maximum` is the core's own
  limit (`MAX_LEASE`, 7 days), so a lease `open_cluster` accepts is never cut short.
- `expired(now)` names the owners whose lease ended; the agent removes their sandboxes and
  then `forget`s them.
"""

from __future__ import annotations

from rock_core import BadRequest
from rock_core.serving import MAX_LEASE, is_seconds


class _Lease:
    __slots__ = ("connections", "deadline", "length")

    def __init__(self, length: float, deadline: float) -> None:
        self.length = length
        self.deadline = deadline
        self.connections = 0


class Leases:
    """The lease of every owner this agent knows."""

    def __init__(
        self, default: float = 60.0, *, minimum: float = 1.0, maximum: float = MAX_LEASE
    ) -> None:
        if not (is_seconds(default) and default <= maximum):
            raise BadRequest(
                f"the default lease must be a positive, finite number of seconds up to"
                f" {maximum:g}, got {default!r}"
            )
        self.default = default
        self.minimum = minimum
        self.maximum = maximum
        self._leases: dict[str, _Lease] = {}

    def grant(self, requested: float) -> float:
        """The lease length an owner gets when it asks for `requested` seconds (0: default)."""
        if requested <= 0:
            return self.default
        return min(max(requested, self.minimum), self.maximum)

    def connect(self, owner: str, now: float, requested: float = 0.0) -> float:
        """A connection of `owner` opened; return the lease length granted."""
        length = self.grant(requested)
        lease = self._leases.get(owner)
        if lease is None:
            lease = self._leases[owner] = _Lease(length, now + length)
        lease.length = length
        lease.deadline = now + length
        lease.connections += 1
        return length

    def renew(self, owner: str, now: float) -> None:
        """The owner said something: its lease runs from now."""
        lease = self._leases.get(owner)
        if lease is not None:
            lease.deadline = now + lease.length

    def disconnect(self, owner: str, last_heard: float) -> int:
        """A connection of `owner` closed, last heard from at `last_heard`; return how many it
        still has open. The lease runs from the owner's latest message on any connection."""
        lease = self._leases.get(owner)
        if lease is None:
            return 0
        lease.connections = max(0, lease.connections - 1)
        lease.deadline = max(lease.deadline, last_heard + lease.length)
        return lease.connections

    def length(self, owner: str) -> float:
        """The lease length granted to `owner` (the default if it holds none)."""
        lease = self._leases.get(owner)
        return self.default if lease is None else lease.length

    def seen(self, owner: str, now: float) -> None:
        """The owner has sandboxes here: give it a lease from now unless it holds one."""
        if owner not in self._leases:
            self._leases[owner] = _Lease(self.default, now + self.default)

    def connected(self, owner: str) -> bool:
        """True while the owner has a connection open."""
        lease = self._leases.get(owner)
        return lease is not None and lease.connections > 0

    def deadline(self, owner: str) -> float | None:
        """When the owner's lease ends, if it has one and no connection holds it open."""
        lease = self._leases.get(owner)
        if lease is None or lease.connections > 0:
            return None
        return lease.deadline

    def expired(self, now: float) -> list[str]:
        """Owners without a connection whose lease has ended, oldest deadline first."""
        gone = [
            (lease.deadline, owner)
            for owner, lease in self._leases.items()
            if lease.connections == 0 and lease.deadline <= now
        ]
        return [owner for _, owner in sorted(gone)]

    def forget(self, owner: str) -> None:
        """Drop an owner (its sandboxes are gone)."""
        self._leases.pop(owner, None)

    def __len__(self) -> int:
        return len(self._leases)
