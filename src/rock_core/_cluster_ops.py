"""The cluster state's decisions for a sandbox that exists: stop, start, delete, admin removal.

`ClusterState.handle` (`_cluster_state`) passes these events here; the async side that takes
locks and sends the requests the actions name is `_operations`'s.

Rules:
- Plain synchronous code over the small `Rooms` protocol (the records, the hosts and the room
  they hold): no awaits, no clocks; `now` comes in.
- An operation the record cannot take is answered with `Refuse(error)`, a typed error the
  caller raises: a deleted sandbox is not found, a failed one must be deleted, a lost one is
  `SandboxLost`, one whose link is down is `HostUnavailable`. An operation already done (a
  stop of a stopped sandbox, a delete of a deleted one) is answered with no action.
- Outcomes move the record through its table (`_states`); an outcome that arrives after
  something else already moved it (a lost host, a pushed change) is dropped (`fire_if`).
- A delete of a pending sandbox takes it out of the queue at once; one whose create is in
  flight cancels that create first (`LockAndRemove`); one whose host is lost completes when
  the host is reconciled (or its agent reaps it when this program's lease ends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, assert_never

from ._cluster_events import (
    ChangeFailed,
    ChangeReplied,
    DeleteAsked,
    Do,
    Doing,
    LockAndRemove,
    Operation,
    Refuse,
    RemoveAsked,
    Removed,
    RemovedByAdmin,
    RemoveFailed,
    SendRemove,
    SendStart,
    SendStop,
    StartAsked,
    StopAsked,
    Wake,
)
from ._connection import AgentConnection
from ._errors import RockError, SandboxFailed, SandboxLost, SandboxNotFound
from ._records import Host, SandboxRecord
from ._states import SandboxEvent, SandboxState

_E = SandboxEvent
_S = SandboxState


class Rooms(Protocol):
    """What the decisions read and give back: records, hosts, the room records hold."""

    records: dict[str, SandboxRecord]
    hosts: dict[str, Host]
    grace: float

    def release(
        self, record: SandboxRecord, now: float, out: list[Do], *, failed_start: bool = False
    ) -> None: ...

    def withdraw(self, record: SandboxRecord, now: float, out: list[Do]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Change:
    already: SandboxState
    begin: SandboxEvent
    failed: SandboxEvent
    done: SandboxEvent
    failed_reason: str
    done_reason: str


_CHANGES: dict[Doing, _Change] = {
    "stop": _Change(_S.STOPPED, _E.STOP, _E.FAIL, _E.STOPPED, "stop failed", "container stopped"),
    "start": _Change(
        _S.RUNNING,
        _E.START,
        _E.CREATE_FAILED,
        _E.CREATED,
        "restart failed",
        "container running again",
    ),
}


def operate(rooms: Rooms, event: Operation, now: float) -> list[Do]:
    """Apply an operation's event at `now`; return what the driver must do."""
    out: list[Do] = []
    match event:
        case StopAsked(sandbox_id, timeout):
            return _begin(
                rooms, sandbox_id, "stop", now, lambda host: SendStop(sandbox_id, host, timeout)
            )
        case StartAsked(sandbox_id):
            return _begin(rooms, sandbox_id, "start", now, lambda host: SendStart(sandbox_id, host))
        case ChangeReplied(sandbox_id, doing, info):
            record = rooms.records[sandbox_id]
            record.info = info
            record.fire_if(_CHANGES[doing].done, _CHANGES[doing].done_reason)
        case ChangeFailed(sandbox_id, doing, error):
            change = _CHANGES[doing]
            rooms.records[sandbox_id].fire_if(change.failed, f"{change.failed_reason}: {error}")
        case DeleteAsked(sandbox_id):
            record = rooms.records[sandbox_id]
            if record.state is _S.PENDING:
                # Out of the queue; or placed, but its create has not resumed yet: room back now.
                rooms.withdraw(record, now, out)
                record.fire(_E.DELETE, "deleted before placement")
                out.append(Wake(sandbox_id))  # its create wakes, and reports the deletion
            elif record.state is not _S.DELETED:
                # A record that never settled has its create in flight: cancelled first.
                out.append(LockAndRemove(sandbox_id, cancel_create=not record.settled.is_set()))
        case RemoveAsked(sandbox_id, reason):
            return _remove(rooms, rooms.records[sandbox_id], reason, now)
        case Removed(sandbox_id):
            record = rooms.records[sandbox_id]
            record.fire_if(_E.DELETED, "container removed")
            rooms.release(record, now, out)
        case RemoveFailed(sandbox_id, error):
            rooms.records[sandbox_id].fire_if(_E.FAIL, f"delete failed: {error}")
        case RemovedByAdmin(sandbox_id):
            known = rooms.records.get(sandbox_id)
            if known is None or known.state is _S.DELETED:
                pass  # not ours, or gone already
            elif known.state is _S.PENDING:  # queued: out of the queue, as a delete would
                rooms.withdraw(known, now, out)
                known.fire(_E.DELETE, "removed by id before placement")
                out.append(Wake(sandbox_id))
            elif not known.settled.is_set():
                pass  # its create is in flight: its outcome (and the next reconcile) decide
            else:
                if known.fire_if(_E.DELETE, "removed by id"):
                    known.fire(_E.DELETED, "container removed")
                rooms.release(known, now, out)
        case _:
            assert_never(event)  # a new operation event must be decided here (mypy checks)
    return out


_Send = Callable[[str], Do]  # the request to send to a host


def _begin(rooms: Rooms, sandbox_id: str, doing: Doing, now: float, send: _Send) -> list[Do]:
    record = rooms.records[sandbox_id]
    change = _CHANGES[doing]
    if record.state is change.already:
        return []
    refusal = _unusable(record, doing) or _host_problem(rooms, record, now)
    if refusal is not None:
        return [Refuse(refusal)]
    assert record.host is not None  # _host_problem checked it
    record.fire(change.begin, f"{doing} requested")
    return [send(record.host)]


def _remove(rooms: Rooms, record: SandboxRecord, reason: str, now: float) -> list[Do]:
    if record.state is _S.DELETED:  # deleted while the delete waited
        return []
    if record.state is _S.LOST:
        # Its host is away: the delete completes when the host is reconciled (or the agent
        # reaps it when this program's lease ends).
        record.fire(_E.DELETE, "delete requested while its host is lost")
        return []
    if record.state is not _S.DELETING:
        record.fire_if(_E.DELETE, reason)
    refusal = _host_problem(rooms, record, now)
    if refusal is not None:
        record.fire_if(_E.FAIL, f"delete failed: {refusal}")
        return [Refuse(refusal)]
    assert record.host is not None  # _host_problem checked it
    return [SendRemove(record.sandbox_id, record.host)]


def _unusable(record: SandboxRecord, doing: str) -> RockError | None:
    if record.state is _S.DELETED:
        return SandboxNotFound(
            f"cannot {doing} sandbox {record.sandbox_id}: it was deleted",
            sandbox_id=record.sandbox_id,
        )
    if record.state is _S.FAILED:
        why = record.history[-1].reason if record.history else ""
        return SandboxFailed(
            f"cannot {doing} sandbox {record.sandbox_id}: it failed ({why}); delete it",
            sandbox_id=record.sandbox_id,
        )
    return None


def _host_problem(rooms: Rooms, record: SandboxRecord, now: float) -> RockError | None:
    """Why `record`'s host cannot take a request now (else None)."""
    if record.host is None or record.host not in rooms.hosts:
        return SandboxFailed(f"sandbox {record.sandbox_id} has no reachable host")
    host = rooms.hosts[record.host]
    if record.state is _S.LOST:
        return SandboxLost(
            f"sandbox {record.sandbox_id} is lost: host {host.host_id} has been unreachable"
            f" for more than {rooms.grace:g} s; it is reconciled if the host comes back",
            sandbox_id=record.sandbox_id,
            host=host.host_id,
        )
    return host.unavailable(now)


def record_of(rooms: Rooms, sandbox_id: str) -> SandboxRecord:
    """The record of a sandbox the cluster knows, or `SandboxNotFound`."""
    record = rooms.records.get(sandbox_id)
    if record is None:
        raise SandboxNotFound(f"no sandbox {sandbox_id!r} in this cluster")
    return record


def host_of(rooms: Rooms, record: SandboxRecord, now: float) -> Host:
    """The host to send a request about `record` to now, or the typed error why not."""
    refusal = _host_problem(rooms, record, now)
    if refusal is not None:
        raise refusal
    assert record.host is not None  # _host_problem checked it
    return rooms.hosts[record.host]


def connection_of(rooms: Rooms, sandbox_id: str, now: float) -> AgentConnection:
    """The link to the agent that holds a sandbox, or the typed error why there is none."""
    record = record_of(rooms, sandbox_id)
    if record.state is _S.DELETED:
        raise SandboxNotFound(f"sandbox {sandbox_id} was deleted")
    return host_of(rooms, record, now).link()


__all__ = ["Rooms", "connection_of", "host_of", "operate", "record_of"]
