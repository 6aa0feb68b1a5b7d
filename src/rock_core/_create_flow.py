"""A create's way from the queue to a running container, through hosts that may say full.

Rules:
- A create waits for its placement (`QueueWaits`), sends its create to the host it was placed
  on, and is done when the agent answers with its container (`_operations.send_create`).
- A `HostFull` answer (other programs filled the host: `rock_agent._admit`) is never the
  caller's error: the state keeps off that host for a while and puts the create back in the
  queue (`HostSaidFull`), and it waits again, on another host or that one, exactly as if its
  own ledger had found no room.
- One `queue_timeout` bounds the whole wait, however many hosts say full. When nothing of it is
  left after a refusal, the create raises `QueueTimedOut` with the host's words.
- Nothing is left behind: a wait that ends (timeout, cancel) withdraws its request; a create
  cancelled mid-send removes what it may have made; a create deleted meanwhile raises
  `SandboxNotFound`.
- With a start gate (`rock_core._start_gate`), each try takes a permit once placed, before its
  send, within the same `queue_timeout`, and gives it back when the send ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from . import _operations
from ._admission import QueueWaits
from ._cluster_events import CreateAsked, Do, Event, Placed, SendCreate
from ._cluster_state import ClusterState
from ._errors import HostFull, QueueTimedOut, SandboxNotFound
from ._records import SandboxRecord
from ._scheduler import Demand
from ._start_gate import StartGate, StartPermit
from ._states import SandboxEvent, SandboxState

Report = Callable[[Event], list[Do]]
Withdraw = Callable[[SandboxRecord], None]
_S = SandboxState


async def place_and_create(
    state: ClusterState,
    report: Report,
    withdraw: Withdraw,
    waits: QueueWaits,
    record: SandboxRecord,
    timeout: float | None,
    gate: StartGate | None = None,
) -> None:
    """Wait for room, create the sandbox there; again while hosts say full (module rules)."""
    began = anyio.current_time()
    refusals = 0
    while True:
        waited = anyio.current_time() - began
        full: HostFull | None = None
        permit = None if gate is None else StartPermit(gate, record.sandbox_id)
        try:
            send = await place(
                state, report, withdraw, waits, record, timeout, waited, refusals < 2, permit
            )
            with anyio.CancelScope() as scope:
                record.create_scope = scope
                try:
                    await _operations.send_create(state, report, record, send)
                except HostFull as exc:
                    full = exc
            record.create_scope = None
        finally:
            if permit is not None:
                await permit.give_back()
        if scope.cancelled_caught:
            raise SandboxNotFound(
                f"sandbox {record.sandbox_id} was deleted while it was being created",
                sandbox_id=record.sandbox_id,
            )
        if full is None:
            return
        refusals += 1
        if record.state is not _S.PENDING:
            raise SandboxNotFound(f"sandbox {record.sandbox_id} was deleted while it waited")
        if timeout is not None:
            if anyio.current_time() - began >= timeout:
                _give_up(state, record)
                raise QueueTimedOut(
                    f"sandbox {record.sandbox_id} found no room within {timeout:g} s: the last"
                    f" host tried refused it ({full}). (queue_timeout=None waits without a"
                    " limit.)",
                    sandbox_id=record.sandbox_id,
                    queue_timeout=timeout,
                    waited=round(anyio.current_time() - began, 3),
                ) from full


async def place(
    state: ClusterState,
    report: Report,
    withdraw: Withdraw,
    waits: QueueWaits,
    record: SandboxRecord,
    timeout: float | None,
    waited: float = 0.0,
    warn: bool = True,
    permit: StartPermit | None = None,
) -> SendCreate:
    """Wait for the scheduler's placement (`waited`: seconds of `timeout` already spent; `warn`:
    a wait for room is worth a warning), then for `permit`; return the state's order to send the
    create."""
    began = anyio.current_time() - waited
    spec = record.spec
    demand = Demand(cpus=spec.cpus, memory=spec.memory, image=spec.image)
    report(CreateAsked(record))
    placed = False
    try:
        await waits.wait(
            record.sandbox_id, demand, record.placed, timeout, waited=waited, warn=warn
        )
        if permit is not None:
            left = None if timeout is None else timeout - (anyio.current_time() - began)
            await permit.take(left, timeout)
        placed = True
    finally:
        if not placed:
            # Leave no request behind in the queue, whatever ended the wait.
            if record.state is _S.PENDING:
                withdraw(record)
            _give_up(state, record)
    sends = [a for a in report(Placed(record.sandbox_id)) if isinstance(a, SendCreate)]
    if not sends:  # the state sends no create: the record left `pending` meanwhile
        raise SandboxNotFound(f"sandbox {record.sandbox_id} was deleted while it waited")
    return sends[0]


def _give_up(state: ClusterState, record: SandboxRecord) -> None:
    """The create stops waiting: its record fails (if still pending) and is forgotten."""
    if record.state is _S.PENDING:
        record.fire(SandboxEvent.FAIL, "gave up waiting for room on a host")
    state.records.pop(record.sandbox_id, None)


__all__ = ["place", "place_and_create"]
