"""The async side of a cluster's per-sandbox operations: stop, start, delete, leftovers.

Rules:
- Plain functions over the cluster's state and its `Report` (the driver's
  `Cluster._handle`: report an event, perform what needs no caller, return every action).
  They decide nothing: `ClusterState.handle` (`_cluster_ops`) does. They take the record's
  lock, report the events, send the requests the actions name (`SendStop`, `SendStart`,
  `SendRemove`), raise what it refuses (`Refuse`) and report the outcome.
- One lifecycle operation at a time per sandbox (its record's lock); a create in flight is
  waited for (stop, start) or cancelled (delete) first.
- A removal that finds the sandbox already gone on its host has reached its goal (`Removed`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio

from ._admission import check_features
from ._checkpoint_copy import ensure_checkpoint
from ._cluster_events import (
    ChangeFailed,
    ChangeReplied,
    DeleteAsked,
    Do,
    Doing,
    Event,
    Failed,
    HostSaidFull,
    LockAndRemove,
    Refuse,
    RemoveAsked,
    Removed,
    RemoveFailed,
    Replied,
    Retried,
    SendCreate,
    SendRemove,
    SendStart,
    SendStop,
    StartAsked,
    StopAsked,
)
from ._cluster_ops import host_of, record_of
from ._cluster_state import ClusterState
from ._errors import HostFull, RockError, SandboxNotFound
from ._link import LinkState
from ._protocol import (
    CreateSandbox,
    Done,
    RemoveSandbox,
    Request,
    SandboxReply,
    StartSandbox,
    StopSandbox,
)
from ._records import Host, SandboxRecord
from ._states import SandboxState

Report = Callable[[Event], list[Do]]


def refused(actions: list[Do]) -> list[Do]:
    """`actions`, unless the state refused: then raise its error."""
    for action in actions:
        if isinstance(action, Refuse):
            raise action.error
    return actions


async def send_create(
    state: ClusterState, report: Report, record: SandboxRecord, send: SendCreate
) -> None:
    """Send a placed create to its host; report `Replied`, `HostSaidFull` (the agent refused it
    as full: nothing was made), or `Failed` (then remove quietly what a cancelled create may
    have made, as the state asks)."""
    host = state.hosts[send.host_id]
    try:
        conn = host.link()
        check_features(conn, record.spec)
        await ensure_checkpoint(state, state.hosts, send.host_id, record.spec.image)
        reply = await conn.call(
            CreateSandbox(sandbox_id=record.sandbox_id, spec=record.spec),
            SandboxReply,
        )
    except HostFull as exc:  # other programs filled the host: back to the queue (`_create_flow`)
        full = str(exc.details.get("full", ""))
        report(HostSaidFull(record.sandbox_id, send.host_id, full, str(exc)))
        raise
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            reason = str(exc) if isinstance(exc, RockError) else "cancelled"
            cancelled = not isinstance(exc, RockError)
            for action in report(Failed(record.sandbox_id, reason, cancelled)):
                if isinstance(action, SendRemove) and action.quiet:
                    # Cancelled mid-create: the container may exist; do not leave it behind.
                    await remove_quietly(host, action.sandbox_id)
        raise
    report(Replied(record.sandbox_id, reply.sandbox))


async def retry_create(state: ClusterState, report: Report, failed: SandboxRecord) -> SandboxRecord:
    """Create again on the same host a sandbox whose first create lost its reply.

    The agent's create is idempotent for an id and spec: it answers with the container the
    first attempt made, or makes it now. Never another host: the first container may exist.
    """
    host = host_of(state, failed, anyio.current_time())  # HostUnavailable while the link is down
    reply = await host.link().call(
        CreateSandbox(sandbox_id=failed.sandbox_id, spec=failed.spec),
        SandboxReply,
    )
    report(Retried(failed, host.host_id, reply.sandbox))
    return state.records[failed.sandbox_id]


async def change(
    state: ClusterState, report: Report, asked: StopAsked | StartAsked
) -> SandboxRecord:
    """Stop or start a sandbox: one lifecycle call at a time per sandbox."""
    sandbox_id = asked.sandbox_id
    record = record_of(state, sandbox_id)
    if record.creating:
        await record.settled.wait()
    doing: Doing = "stop" if isinstance(asked, StopAsked) else "start"
    async with record.lock:
        if state.records.get(sandbox_id) is not record:  # deleted and made anew as we waited
            raise SandboxNotFound(
                f"cannot {doing} sandbox {sandbox_id}: it was deleted", sandbox_id=sandbox_id
            )
        for send in refused(report(asked)):
            request: Request
            if isinstance(send, SendStop):
                request = StopSandbox(sandbox_id=sandbox_id, timeout=send.timeout)
            elif isinstance(send, SendStart):
                request = StartSandbox(sandbox_id=sandbox_id)
            else:
                continue
            try:
                reply = await state.hosts[send.host_id].link().call(request, SandboxReply)
            except RockError as exc:
                report(ChangeFailed(sandbox_id, doing, str(exc)))
                raise
            report(ChangeReplied(sandbox_id, doing, reply.sandbox))
    return record


async def delete(state: ClusterState, report: Report, sandbox_id: str) -> SandboxRecord:
    """Remove a sandbox and its container; deleting a deleted one is a no-op."""
    record = record_of(state, sandbox_id)
    for action in report(DeleteAsked(sandbox_id)):
        if not isinstance(action, LockAndRemove):
            continue
        if action.cancel_create and record.create_scope is not None:
            record.create_scope.cancel()  # its caller gets `SandboxNotFound`
            await record.settled.wait()
        async with record.lock:
            if state.records.get(sandbox_id) is not record:
                break  # deleted (and made anew) while this delete waited: nothing left to do
            await remove(state, report, RemoveAsked(sandbox_id))
    return record


async def remove(state: ClusterState, report: Report, asked: RemoveAsked) -> None:
    """Remove a sandbox's container on its host; report `Removed` when it is gone."""
    sandbox_id = asked.sandbox_id
    record = state.records.get(sandbox_id)
    for send in refused(report(asked)):
        if not isinstance(send, SendRemove):
            continue
        try:
            await state.hosts[send.host_id].link().call(RemoveSandbox(sandbox_id=sandbox_id), Done)
        except SandboxNotFound:
            pass  # already gone on the host: the goal is reached
        except RockError as exc:
            if state.records.get(sandbox_id) is record:
                report(RemoveFailed(sandbox_id, str(exc)))
            raise
        if state.records.get(sandbox_id) is record:  # not a new sandbox of the same id
            report(Removed(sandbox_id))


async def remove_leftover(state: ClusterState, report: Report, sandbox_id: str) -> None:
    """Finish deleting a sandbox reconcile found (a failed create's container, or a delete
    the link broke under); errors are dropped (the next reconcile tries again)."""
    with contextlib.suppress(RockError):
        await remove(state, report, RemoveAsked(sandbox_id, "leftover of a failed create"))


async def delete_all(state: ClusterState, report: Report) -> None:
    """Delete every sandbox the cluster still holds on a connected host (on exit), 16 at a
    time, within 120 s, shielded; errors are dropped."""
    hosts = state.hosts
    live = [
        r
        for r in state.records.values()
        if r.state not in (SandboxState.DELETED, SandboxState.PENDING, SandboxState.LOST)
        and r.host in hosts
        and hosts[r.host].state == LinkState.CONNECTED
    ]
    limiter = anyio.CapacityLimiter(16)

    async def one(record: SandboxRecord) -> None:
        async with limiter:
            with contextlib.suppress(RockError):
                await delete(state, report, record.sandbox_id)

    with anyio.CancelScope(shield=True), anyio.move_on_after(120):
        async with anyio.create_task_group() as tg:
            for record in live:
                tg.start_soon(one, record)


async def remove_quietly(host: Host, sandbox_id: str) -> None:
    """Remove a container a cancelled create may have made; errors are dropped."""
    with contextlib.suppress(RockError), anyio.move_on_after(30):
        conn = host.link()
        await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)


__all__ = [
    "Report",
    "change",
    "delete",
    "delete_all",
    "refused",
    "remove",
    "remove_leftover",
    "remove_quietly",
    "retry_create",
    "send_create",
]
