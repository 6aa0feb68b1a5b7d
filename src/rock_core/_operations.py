"""What a cluster does to one of its sandboxes once it exists: stop, start, delete, requests.

Rules:
- One lifecycle operation at a time per sandbox (its record's lock); a create in flight is
  waited for (stop, start) or cancelled (delete) first.
- Outcomes move the record through its table (`_states`); an outcome that arrives after
  something else already moved it (a lost host, a pushed change) is dropped (`fire_if`).
- A sandbox whose host is lost answers `SandboxLost`; its delete completes when the host is
  reconciled (or its agent reaps it when this program's lease ends).
- The records, hosts and the room they hold are the `ClusterState`'s: this mixin reaches them
  through `state`, and gives room back through `_release` and `_withdraw`, which the driver
  (`_cluster.Cluster`) implements.
"""

from __future__ import annotations

import abc
import contextlib
from typing import TypeVar

import anyio

from ._cluster_state import ClusterState
from ._connection import AgentConnection
from ._errors import RockError, SandboxFailed, SandboxLost, SandboxNotFound
from ._protocol import (
    Done,
    InspectSandbox,
    RemoveSandbox,
    Reply,
    Request,
    SandboxInfo,
    SandboxReply,
    StartSandbox,
    StopSandbox,
)
from ._records import Host, SandboxRecord
from ._states import SandboxEvent, SandboxState

R = TypeVar("R", bound=Reply)

_E = SandboxEvent
_S = SandboxState


class SandboxOperations(abc.ABC):
    """The per-sandbox operations of a `Cluster`; see the module's rules."""

    state: ClusterState
    grace: float

    @abc.abstractmethod
    def _release(self, record: SandboxRecord, *, failed_start: bool = False) -> None:
        """Give the room `record` holds back to the scheduler (and wake who waits for it)."""

    @abc.abstractmethod
    def _withdraw(self, record: SandboxRecord) -> None:
        """Take a pending `record` out of the queue (or give back the room just given)."""

    def record(self, sandbox_id: str) -> SandboxRecord:
        """The record of a sandbox this cluster knows, or `SandboxNotFound`."""
        record = self.state.records.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r} in this cluster")
        return record

    def records(self) -> list[SandboxRecord]:
        """Every sandbox this cluster has created and not yet forgotten."""
        return list(self.state.records.values())

    async def _finish_delete(self, record: SandboxRecord) -> None:
        with contextlib.suppress(RockError):
            if record.state is _S.FAILED:
                record.fire(_E.DELETE, "leftover of a failed create")
            await self._remove_on_host(record)

    def _host_of(self, record: SandboxRecord) -> Host:
        if record.host is None or record.host not in self.state.hosts:
            raise SandboxFailed(f"sandbox {record.sandbox_id} has no reachable host")
        host = self.state.hosts[record.host]
        if record.state is _S.LOST:
            raise SandboxLost(
                f"sandbox {record.sandbox_id} is lost: host {host.host_id} has been unreachable"
                f" for more than {self.grace:g} s; it is reconciled if the host comes back",
                sandbox_id=record.sandbox_id,
                host=host.host_id,
            )
        return host

    def _link(self, record: SandboxRecord) -> AgentConnection:
        return self._host_of(record).link()

    async def call(self, sandbox_id: str, request: Request, expect: type[R]) -> R:
        """Send a request about a sandbox to its host's agent."""
        record = self.record(sandbox_id)
        if record.state is _S.DELETED:
            raise SandboxNotFound(f"sandbox {sandbox_id} was deleted")
        return await self._link(record).call(request, expect)

    def connection(self, sandbox_id: str) -> AgentConnection:
        """The link to the agent that holds a sandbox."""
        record = self.record(sandbox_id)
        if record.state is _S.DELETED:
            raise SandboxNotFound(f"sandbox {sandbox_id} was deleted")
        return self._link(record)

    async def _settle_create(self, record: SandboxRecord) -> None:
        """Wait for a create in flight to finish (either way) before acting on its sandbox."""
        if record.state in (_S.PENDING, _S.CREATING) and record.create_scope is not None:
            await record.settled.wait()
        elif record.state is _S.PENDING and not record.settled.is_set():
            await record.settled.wait()

    def _usable(self, record: SandboxRecord, doing: str) -> None:
        if record.state is _S.DELETED:
            raise SandboxNotFound(
                f"cannot {doing} sandbox {record.sandbox_id}: it was deleted",
                sandbox_id=record.sandbox_id,
            )
        if record.state is _S.FAILED:
            why = record.history[-1].reason if record.history else ""
            raise SandboxFailed(
                f"cannot {doing} sandbox {record.sandbox_id}: it failed ({why}); delete it",
                sandbox_id=record.sandbox_id,
            )

    async def stop_sandbox(self, sandbox_id: str, *, timeout: float = 10.0) -> SandboxRecord:
        """Stop a running sandbox (kept, restartable); stopping a stopped one is a no-op."""
        return await self._change(
            sandbox_id,
            "stop",
            already=_S.STOPPED,
            events=(_E.STOP, _E.FAIL, _E.STOPPED),
            reasons=("stop failed", "container stopped"),
            request=StopSandbox(sandbox_id=sandbox_id, timeout=timeout),
        )

    async def start_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Start a stopped sandbox again (its files are kept; sessions are new)."""
        return await self._change(
            sandbox_id,
            "start",
            already=_S.RUNNING,
            events=(_E.START, _E.CREATE_FAILED, _E.CREATED),
            reasons=("restart failed", "container running again"),
            request=StartSandbox(sandbox_id=sandbox_id),
        )

    async def _change(
        self,
        sandbox_id: str,
        doing: str,
        *,
        already: SandboxState,
        events: tuple[SandboxEvent, SandboxEvent, SandboxEvent],
        reasons: tuple[str, str],
        request: Request,
    ) -> SandboxRecord:
        """Stop or start: one lifecycle call at a time per sandbox; a no-op if it is
        `already` there. `events` are (begin, failed, done); `reasons` (failed, done)."""
        record = self.record(sandbox_id)
        await self._settle_create(record)
        begin, failed, done = events
        async with record.lock:
            if record.state is already:
                return record
            self._usable(record, doing)
            conn = self._link(record)
            record.fire(begin, f"{doing} requested")
            try:
                reply = await conn.call(request, SandboxReply)
            except RockError as exc:
                record.fire_if(failed, f"{reasons[0]}: {exc}")
                raise
            record.info = reply.sandbox
            record.fire_if(done, reasons[1])
        return record

    async def delete_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Remove a sandbox and its container; deleting a deleted one is a no-op.

        A create in flight is cancelled first (its caller gets `SandboxNotFound`).
        """
        record = self.record(sandbox_id)
        if record.state is _S.DELETED:
            return record
        if record.state is _S.PENDING:
            # Out of the queue; or placed, but its create has not resumed yet: room back now.
            self._withdraw(record)
            record.fire(_E.DELETE, "deleted before placement")
            record.placed.set()  # wake its create, which then reports the deletion
            return record
        if record.create_scope is not None:
            record.create_scope.cancel()
            await record.settled.wait()
        async with record.lock:
            if record.lifecycle.state is _S.DELETED:  # deleted while we waited
                return record
            if record.state is _S.LOST:
                # Its host is away: the delete completes when the host is reconciled (or the
                # agent reaps it when this program's lease ends).
                record.fire(_E.DELETE, "delete requested while its host is lost")
                return record
            if record.state is not _S.DELETING:
                record.fire_if(_E.DELETE, "delete requested")
            await self._remove_on_host(record)
        return record

    async def _remove_on_host(self, record: SandboxRecord) -> None:
        """Remove a `deleting` sandbox's container; `deleted` when it is gone."""
        try:
            conn = self._host_of(record).link()
            await conn.call(RemoveSandbox(sandbox_id=record.sandbox_id), Done)
        except SandboxNotFound:
            pass  # already gone on the host: the goal is reached
        except RockError as exc:
            record.fire_if(_E.FAIL, f"delete failed: {exc}")
            raise
        record.fire_if(_E.DELETED, "container removed")
        self._release(record)

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """The agent's live view of a sandbox."""
        conn = self.connection(sandbox_id)
        reply = await conn.call(InspectSandbox(sandbox_id=sandbox_id), SandboxReply)
        self.record(sandbox_id).info = reply.sandbox
        return reply.sandbox

    async def _remove_quietly(self, host: Host, sandbox_id: str) -> None:
        with contextlib.suppress(RockError), anyio.move_on_after(30):
            conn = host.link()
            await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)


__all__ = ["SandboxOperations"]
