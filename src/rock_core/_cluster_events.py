"""The vocabulary between the cluster's state and its driver: events in, actions out.

Rules:
- Events say what happened (or was asked), with the data the state needs and nothing of I/O;
  actions say what must happen outside. Both are frozen values.
- `ClusterState.handle` (`_cluster_state`) takes an `Event` and returns `Do`s; the driver
  (`_cluster`) reports events and performs actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._protocol import SandboxChanged, SandboxInfo, SandboxListReply, Welcome
from ._records import SandboxRecord

# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CreateAsked:
    """A create of `record` (new, pending) asks the scheduler for a host."""

    record: SandboxRecord


@dataclass(frozen=True, slots=True)
class Placed:
    """The create of `sandbox_id` woke up placed (or deleted meanwhile)."""

    sandbox_id: str


@dataclass(frozen=True, slots=True)
class Replied:
    """The agent answered the create of `sandbox_id` with its container."""

    sandbox_id: str
    info: SandboxInfo


@dataclass(frozen=True, slots=True)
class Failed:
    """The create of `sandbox_id` failed (`reason`), or was `cancelled` mid-request."""

    sandbox_id: str
    reason: str
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Retried:
    """A create retried on `host_id` (its first reply was lost) got `info` back."""

    failed: SandboxRecord
    host_id: str
    info: SandboxInfo


@dataclass(frozen=True, slots=True)
class LinkUp:
    """A link to `address` came up with `welcome`; `known` is the host it led to before."""

    address: str
    welcome: Welcome
    known: str | None = None


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The link to `host_id` broke (or a reconnect failed), with `error`."""

    host_id: str
    error: str


@dataclass(frozen=True, slots=True)
class GraceOver:
    """The grace timer started for `generation` of `host_id`'s link ran out."""

    host_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class Changed:
    """The agent of `host_id` reports a change it made (`SandboxChanged`)."""

    host_id: str
    change: SandboxChanged


@dataclass(frozen=True, slots=True)
class Listing:
    """The agent of `host_id` listed this owner's containers (after a link came up)."""

    host_id: str
    reply: SandboxListReply


Event = (
    CreateAsked
    | Placed
    | Replied
    | Failed
    | Retried
    | LinkUp
    | LinkDown
    | GraceOver
    | Changed
    | Listing
)

# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendCreate:
    """Send the create of `sandbox_id` to `host_id` (its create task does)."""

    sandbox_id: str
    host_id: str


@dataclass(frozen=True, slots=True)
class SendRemove:
    """Remove `sandbox_id` on `host_id`: a leftover to finish deleting, or (`quiet`) the
    container a cancelled create may have made."""

    sandbox_id: str
    host_id: str
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class StartGrace:
    """Report `GraceOver(host_id, generation)` after `seconds`."""

    host_id: str
    generation: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Wake:
    """The create of `sandbox_id` was placed: wake its waiter."""

    sandbox_id: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """A container of this owner unknown here was taken over (the driver says so)."""

    sandbox_id: str
    host_id: str


@dataclass(frozen=True, slots=True)
class Capacity:
    """Room or start slots may have grown: wake what waits for capacity (pools)."""


Do = SendCreate | SendRemove | StartGrace | Wake | Adopt | Capacity


__all__ = [
    "Adopt",
    "Capacity",
    "Changed",
    "CreateAsked",
    "Do",
    "Event",
    "Failed",
    "GraceOver",
    "LinkDown",
    "LinkUp",
    "Listing",
    "Placed",
    "Replied",
    "Retried",
    "SendCreate",
    "SendRemove",
    "StartGrace",
    "Wake",
]
