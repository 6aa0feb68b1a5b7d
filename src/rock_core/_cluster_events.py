"""The vocabulary between the cluster's state and its driver: events in, actions out.

Rules:
- Events say what happened (or was asked), with the data the state needs and nothing of I/O;
  actions say what must happen outside. Both are frozen values.
- `ClusterState.handle` (`_cluster_state`) takes an `Event` and returns `Do`s; the driver
  (`_cluster`) reports events and performs actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._errors import RockError
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


@dataclass(frozen=True, slots=True)
class StopAsked:
    """A stop of `sandbox_id` (its lock held, its create settled), `timeout` s for the engine."""

    sandbox_id: str
    timeout: float


@dataclass(frozen=True, slots=True)
class StartAsked:
    """A start of `sandbox_id` again (its lock held, its create settled)."""

    sandbox_id: str


Doing = Literal["stop", "start"]


@dataclass(frozen=True, slots=True)
class ChangeReplied:
    """The agent did the stop or start (`doing`) of `sandbox_id`: its container is `info`."""

    sandbox_id: str
    doing: Doing
    info: SandboxInfo


@dataclass(frozen=True, slots=True)
class ChangeFailed:
    """The stop or start (`doing`) of `sandbox_id` failed with `error` (or its reply was lost)."""

    sandbox_id: str
    doing: Doing
    error: str


@dataclass(frozen=True, slots=True)
class DeleteAsked:
    """A delete of `sandbox_id` was asked (before its lock is taken)."""

    sandbox_id: str


@dataclass(frozen=True, slots=True)
class RemoveAsked:
    """Remove `sandbox_id` on its host: its lock is held (a delete), or it is a leftover."""

    sandbox_id: str
    reason: str = "delete requested"


@dataclass(frozen=True, slots=True)
class Removed:
    """The agent removed `sandbox_id` (or it was already gone there)."""

    sandbox_id: str


@dataclass(frozen=True, slots=True)
class RemoveFailed:
    """The removal of `sandbox_id` failed with `error`."""

    sandbox_id: str
    error: str


@dataclass(frozen=True, slots=True)
class RemovedByAdmin:
    """An administrator removed `sandbox_id` by id on some host (`_admin.remove_any`)."""

    sandbox_id: str


@dataclass(frozen=True, slots=True)
class HostSaidFull:
    """The agent of `host_id` refused the create of `sandbox_id` with `HostFull`: the host is
    full (`full` says what), counting the other programs that use it. `reason` is its words."""

    sandbox_id: str
    host_id: str
    full: str
    reason: str


@dataclass(frozen=True, slots=True)
class Reopen:
    """The wait after the `refusals`-th refusal in a row of `host_id` ran out (`StartBackoff`)."""

    host_id: str
    refusals: int


Operation = (
    StopAsked
    | StartAsked
    | ChangeReplied
    | ChangeFailed
    | DeleteAsked
    | RemoveAsked
    | Removed
    | RemoveFailed
    | RemovedByAdmin
)
"""The events of an operation on a sandbox that exists (decided in `_cluster_ops`)."""

Event = (
    CreateAsked
    | Placed
    | Replied
    | Failed
    | HostSaidFull
    | Reopen
    | Retried
    | LinkUp
    | LinkDown
    | GraceOver
    | Changed
    | Listing
    | Operation
)

# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendCreate:
    """Send the create of `sandbox_id` to `host_id` (its create task does)."""

    sandbox_id: str
    host_id: str


@dataclass(frozen=True, slots=True)
class SendRemove:
    """Send the removal of `sandbox_id` to `host_id` (the caller does, and reports `Removed` or
    `RemoveFailed`); or (`quiet`) remove the container a cancelled create may have made."""

    sandbox_id: str
    host_id: str
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class RemoveLeftover:
    """Finish deleting `sandbox_id` on `host_id` in the background (reconcile found it)."""

    sandbox_id: str
    host_id: str


@dataclass(frozen=True, slots=True)
class SendStop:
    """Send the stop of `sandbox_id` to `host_id` (the caller does, and reports the outcome)."""

    sandbox_id: str
    host_id: str
    timeout: float


@dataclass(frozen=True, slots=True)
class SendStart:
    """Send the start of `sandbox_id` to `host_id` (the caller does, and reports the outcome)."""

    sandbox_id: str
    host_id: str


@dataclass(frozen=True, slots=True)
class LockAndRemove:
    """Take `sandbox_id`'s lock (first cancelling its create in flight and waiting for it to
    settle, if `cancel_create`), then report `RemoveAsked`."""

    sandbox_id: str
    cancel_create: bool


@dataclass(frozen=True, slots=True)
class Refuse:
    """The operation asked cannot be done: the caller raises `error`."""

    error: RockError


@dataclass(frozen=True, slots=True)
class StartGrace:
    """Report `GraceOver(host_id, generation)` after `seconds`."""

    host_id: str
    generation: int
    seconds: float


@dataclass(frozen=True, slots=True)
class StartBackoff:
    """Report `Reopen(host_id, refusals)` in `seconds`: a host that said full is kept off."""

    host_id: str
    seconds: float
    refusals: int


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


Do = (
    SendCreate
    | SendRemove
    | RemoveLeftover
    | SendStop
    | SendStart
    | LockAndRemove
    | Refuse
    | StartGrace
    | StartBackoff
    | Wake
    | Adopt
    | Capacity
)


__all__ = [
    "Adopt",
    "Capacity",
    "ChangeFailed",
    "ChangeReplied",
    "Changed",
    "CreateAsked",
    "DeleteAsked",
    "Do",
    "Doing",
    "Event",
    "Failed",
    "GraceOver",
    "HostSaidFull",
    "LinkDown",
    "LinkUp",
    "Listing",
    "LockAndRemove",
    "Operation",
    "Placed",
    "Refuse",
    "RemoveAsked",
    "RemoveFailed",
    "RemoveLeftover",
    "Removed",
    "RemovedByAdmin",
    "Reopen",
    "Replied",
    "Retried",
    "SendCreate",
    "SendRemove",
    "SendStart",
    "SendStop",
    "StartAsked",
    "StartBackoff",
    "StartGrace",
    "StopAsked",
    "Wake",
]
