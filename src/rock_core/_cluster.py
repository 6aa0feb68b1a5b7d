"""The embedded core: `open_cluster` connects to agents and runs the scheduler's decisions.

The scheduler (`_scheduler`) and the lifecycle table (`_states`) decide; this module only
performs: it sends requests to agents, reports outcomes back as events, and records every
transition. A training program is its own admin: no server to run.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

import anyio

from ._connection import AgentConnection
from ._errors import (
    AlreadyExists,
    BadRequest,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    TimedOut,
    TransportError,
)
from ._hosts import open_host
from ._owner import local_owner
from ._protocol import (
    CreateSandbox,
    Done,
    InspectSandbox,
    ListSandboxes,
    RemoveSandbox,
    Reply,
    Request,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    SandboxSpec,
    StartSandbox,
    StopSandbox,
)
from ._scheduler import Action, Demand, Resources, Scheduler, SchedulerStatistics
from ._states import SandboxEvent, SandboxLifecycle, SandboxState, Transition

log = logging.getLogger("rock_core")

R = TypeVar("R", bound=Reply)
_E = SandboxEvent
_S = SandboxState


class SandboxRecord:
    """The core's view of one sandbox: spec, host, lifecycle with its full history."""

    def __init__(self, sandbox_id: str, spec: SandboxSpec) -> None:
        self.sandbox_id = sandbox_id
        self.spec = spec
        self.host: str | None = None
        self.lifecycle = SandboxLifecycle()
        self.info: SandboxInfo | None = None
        self.placed = anyio.Event()
        self.settled = anyio.Event()  # set when a create finishes, either way
        self.error: RockError | None = None
        self.holds_resources = False  # the scheduler counts this sandbox against its host

    @property
    def state(self) -> SandboxState:
        """The current lifecycle state."""
        return self.lifecycle.state

    @property
    def history(self) -> list[Transition]:
        """Every transition so far, oldest first."""
        return list(self.lifecycle.history)

    def fire(self, event: SandboxEvent, reason: str = "") -> None:
        """Apply a lifecycle event now."""
        self.lifecycle.fire(event, time.time(), reason)


class Host:
    """One connected agent."""

    def __init__(self, host_id: str, address: str, connection: AgentConnection) -> None:
        self.host_id = host_id
        self.address = address
        self.connection = connection


class Cluster:
    """Sandboxes across the agents of `open_cluster`; every method is safe to call concurrently."""

    def __init__(self, owner: str, scheduler: Scheduler) -> None:
        self.owner = owner
        self.scheduler = scheduler
        self.hosts: dict[str, Host] = {}
        self._records: dict[str, SandboxRecord] = {}

    # ------------------------------------------------------------------ hosts

    def _add_host(self, address: str, connection: AgentConnection) -> None:
        welcome = connection.welcome
        host_id = welcome.host_id
        if host_id in self.hosts:
            raise AlreadyExists(f"two addresses lead to the same host {host_id!r}")
        self.hosts[host_id] = Host(host_id, address, connection)
        self._apply(
            self.scheduler.add_host(
                host_id,
                Resources(cpus=welcome.cpus, memory=welcome.memory),
                images=welcome.images,
            )
        )

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            record = self._records.get(action.request_id)
            if record is None:
                continue
            record.host = action.host_id
            record.holds_resources = True
            record.placed.set()

    def _release(self, record: SandboxRecord, *, failed_start: bool = False) -> None:
        if not record.holds_resources:
            return
        record.holds_resources = False
        now = time.monotonic()
        if failed_start:
            self._apply(self.scheduler.start_failed(record.sandbox_id, now))
        else:
            self._apply(self.scheduler.release(record.sandbox_id, now))

    # ------------------------------------------------------------------ sandboxes

    def record(self, sandbox_id: str) -> SandboxRecord:
        """The record of a sandbox this cluster knows, or `SandboxNotFound`."""
        record = self._records.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r} in this cluster")
        return record

    def records(self) -> list[SandboxRecord]:
        """Every sandbox this cluster has created and not yet forgotten."""
        return list(self._records.values())

    async def create_sandbox(
        self,
        spec: SandboxSpec,
        *,
        sandbox_id: str | None = None,
        queue_timeout: float | None = None,
    ) -> SandboxRecord:
        """Place and start a sandbox; with a `sandbox_id`, a retry returns the same sandbox."""
        sandbox_id = sandbox_id or new_sandbox_id()
        existing = self._records.get(sandbox_id)
        if existing is not None and existing.state is not _S.DELETED:
            if existing.spec != spec:
                raise AlreadyExists(
                    f"sandbox {sandbox_id!r} already exists with a different spec",
                    sandbox_id=sandbox_id,
                )
            await existing.settled.wait()
            if existing.error is not None and existing.state is _S.FAILED:
                raise existing.error
            return existing
        record = SandboxRecord(sandbox_id, spec)
        self._records[sandbox_id] = record
        try:
            await self._place(record, queue_timeout)
            await self._start(record)
        except BaseException as exc:
            if isinstance(exc, RockError):
                record.error = exc
            raise
        finally:
            record.settled.set()
        return record

    async def _place(self, record: SandboxRecord, queue_timeout: float | None) -> None:
        spec = record.spec
        self._apply(
            self.scheduler.submit(
                record.sandbox_id,
                Demand(cpus=spec.cpus, memory=spec.memory, image=spec.image),
                time.monotonic(),
            )
        )
        placed = False
        try:
            with anyio.fail_after(queue_timeout):
                await record.placed.wait()
            placed = True
        except TimeoutError as exc:
            raise TimedOut(
                f"sandbox {record.sandbox_id} waited {queue_timeout:g} s for room on a host",
                sandbox_id=record.sandbox_id,
            ) from exc
        finally:
            if not placed:
                # Leave no request behind in the queue, whatever ended the wait.
                if record.state is _S.PENDING:
                    with contextlib.suppress(RockError):
                        self._apply(self.scheduler.cancel(record.sandbox_id))
                    record.fire(_E.FAIL, "gave up waiting for room on a host")
                self._records.pop(record.sandbox_id, None)
        if record.state is _S.DELETED:
            raise SandboxNotFound(f"sandbox {record.sandbox_id} was deleted while it waited")
        assert record.host is not None
        record.fire(_E.PLACE, f"placed on {record.host}")

    async def _start(self, record: SandboxRecord) -> None:
        host = self._host_of(record)
        try:
            reply = await host.connection.call(
                CreateSandbox(
                    id=host.connection.next_id(), sandbox_id=record.sandbox_id, spec=record.spec
                ),
                SandboxReply,
            )
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                self._release(record, failed_start=True)
                reason = str(exc) if isinstance(exc, RockError) else "cancelled"
                record.fire(_E.CREATE_FAILED, reason)
                if not isinstance(exc, RockError):
                    # Cancelled mid-create: the container may exist; do not leave it behind.
                    await self._remove_quietly(host, record.sandbox_id)
            raise
        self._apply(self.scheduler.started(record.sandbox_id, time.monotonic()))
        record.info = reply.sandbox
        record.fire(_E.CREATED, f"container {reply.sandbox.container_id[:12]} running")

    def _host_of(self, record: SandboxRecord) -> Host:
        if record.host is None or record.host not in self.hosts:
            raise SandboxFailed(f"sandbox {record.sandbox_id} has no reachable host")
        return self.hosts[record.host]

    async def call(self, sandbox_id: str, request: Request, expect: type[R]) -> R:
        """Send a request about a sandbox to its host's agent."""
        record = self.record(sandbox_id)
        if record.state is _S.DELETED:
            raise SandboxNotFound(f"sandbox {sandbox_id} was deleted")
        return await self._host_of(record).connection.call(request, expect)

    def connection(self, sandbox_id: str) -> AgentConnection:
        """The link to the agent that holds a sandbox."""
        record = self.record(sandbox_id)
        if record.state is _S.DELETED:
            raise SandboxNotFound(f"sandbox {sandbox_id} was deleted")
        return self._host_of(record).connection

    async def stop_sandbox(self, sandbox_id: str, *, timeout: float = 10.0) -> SandboxRecord:
        """Stop a running sandbox (kept, restartable); stopping a stopped one is a no-op."""
        record = self.record(sandbox_id)
        if record.state in (_S.STOPPED, _S.DELETED):
            return record
        record.fire(_E.STOP, "stop requested")
        conn = self._host_of(record).connection
        try:
            reply = await conn.call(
                StopSandbox(id=conn.next_id(), sandbox_id=sandbox_id, timeout=timeout),
                SandboxReply,
            )
        except RockError as exc:
            record.fire(_E.FAIL, f"stop failed: {exc}")
            raise
        record.info = reply.sandbox
        record.fire(_E.STOPPED, "container stopped")
        return record

    async def start_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Start a stopped sandbox again (its files are kept; sessions are new)."""
        record = self.record(sandbox_id)
        if record.state is _S.RUNNING:
            return record
        record.fire(_E.START, "start requested")
        conn = self._host_of(record).connection
        try:
            reply = await conn.call(
                StartSandbox(id=conn.next_id(), sandbox_id=sandbox_id), SandboxReply
            )
        except RockError as exc:
            record.fire(_E.CREATE_FAILED, f"restart failed: {exc}")
            raise
        record.info = reply.sandbox
        record.fire(_E.CREATED, "container running again")
        return record

    async def delete_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Remove a sandbox and its container; deleting a deleted one is a no-op."""
        record = self.record(sandbox_id)
        if record.state is _S.DELETED:
            return record
        if record.state is _S.PENDING:
            with contextlib.suppress(RockError):
                self._apply(self.scheduler.cancel(sandbox_id))
            record.fire(_E.DELETE, "deleted before placement")
            record.placed.set()  # wake its create, which then reports the deletion
            return record
        record.fire(_E.DELETE, "delete requested")
        host = self._host_of(record)
        try:
            await host.connection.call(
                RemoveSandbox(id=host.connection.next_id(), sandbox_id=sandbox_id), Done
            )
        except SandboxNotFound:
            pass  # already gone on the host: the goal is reached
        except RockError as exc:
            record.fire(_E.FAIL, f"delete failed: {exc}")
            raise
        record.fire(_E.DELETED, "container removed")
        self._release(record)
        return record

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """The agent's live view of a sandbox."""
        conn = self.connection(sandbox_id)
        reply = await conn.call(
            InspectSandbox(id=conn.next_id(), sandbox_id=sandbox_id), SandboxReply
        )
        self.record(sandbox_id).info = reply.sandbox
        return reply.sandbox

    async def list_host_sandboxes(self, *, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox on every connected host (all owners unless one is named)."""
        found: list[SandboxInfo] = []
        for host in self.hosts.values():
            conn = host.connection
            reply = await conn.call(ListSandboxes(id=conn.next_id(), owner=owner), SandboxListReply)
            found.extend(reply.sandboxes)
        return found

    async def remove_any(self, sandbox_id: str) -> None:
        """Remove a sandbox by id on whichever host has it, whoever owns it."""
        for host in self.hosts.values():
            conn = host.connection
            try:
                await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id=sandbox_id), Done)
            except SandboxNotFound:
                continue
            record = self._records.get(sandbox_id)
            if record is not None and record.state is not _S.DELETED:
                record.fire(_E.DELETE, "removed by id")
                record.fire(_E.DELETED, "container removed")
                self._release(record)
            return
        raise SandboxNotFound(f"no sandbox {sandbox_id!r} on any host")

    def statistics(self) -> SchedulerStatistics:
        """Hosts, capacity, use and queue depth, from the scheduler."""
        return self.scheduler.statistics()

    async def _remove_quietly(self, host: Host, sandbox_id: str) -> None:
        conn = host.connection
        with contextlib.suppress(RockError), anyio.move_on_after(30):
            await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id=sandbox_id), Done)

    async def _cleanup(self) -> None:
        """Delete every sandbox this cluster still holds (on exit, even after a crash)."""
        live = [r for r in self._records.values() if r.state not in (_S.DELETED, _S.PENDING)]

        async def delete(record: SandboxRecord) -> None:
            with contextlib.suppress(RockError):
                await self.delete_sandbox(record.sandbox_id)

        with anyio.CancelScope(shield=True), anyio.move_on_after(120):
            limiter = anyio.CapacityLimiter(16)

            async def bounded(record: SandboxRecord) -> None:
                async with limiter:
                    await delete(record)

            async with anyio.create_task_group() as tg:
                for record in live:
                    tg.start_soon(bounded, record)


def new_sandbox_id() -> str:
    """A fresh random sandbox id."""
    return "sb-" + secrets.token_hex(6)


@asynccontextmanager
async def open_cluster(
    hosts: Sequence[str] = ("local",),
    *,
    owner: str | None = None,
    policy: str = "spread",
    max_queue: int = 10_000,
    max_starts: int = 8,
) -> AsyncIterator[Cluster]:
    """Connect to every host's agent; on exit delete this cluster's sandboxes and disconnect."""
    if isinstance(hosts, str):
        hosts = [hosts]
    if not hosts:
        raise BadRequest("a cluster needs at least one host")
    if policy not in ("spread", "binpack"):
        raise BadRequest(f"unknown placement policy {policy!r}: use 'spread' or 'binpack'")
    scheduler = Scheduler(
        "spread" if policy == "spread" else "binpack",
        max_queue=max_queue,
        default_max_starts=max_starts,
    )
    cluster = Cluster(owner or local_owner(), scheduler)
    async with AsyncExitStack() as stack:
        for address in hosts:
            try:
                conn = await stack.enter_async_context(open_host(address, owner=cluster.owner))
            except TransportError as exc:
                raise TransportError(f"cannot connect to host {address}: {exc}") from exc
            cluster._add_host(address, conn)
        try:
            yield cluster
        finally:
            await cluster._cleanup()
