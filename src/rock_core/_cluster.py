"""The embedded core: `open_cluster` connects to agents and runs the scheduler's decisions.

The scheduler (`_scheduler`) and the lifecycle table (`_states`) decide; this module only
performs: it sends requests to agents, reports outcomes back as events, and records every
transition. A training program is its own admin: no server to run.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.abc
from anyio.abc import TaskGroup
from msgspec import UNSET, UnsetType

from ._addresses import HostAddress, expand, parse
from ._admission import QueueWaits, check_admission, check_features
from ._attach import Attachment, Run
from ._connection import AgentConnection, unwrap_single_errors
from ._errors import (
    AlreadyExists,
    BadRequest,
    NotFound,
    RockError,
    SandboxFailed,
    SandboxLost,
    SandboxNotFound,
    TransportError,
)
from ._hosts import open_host
from ._options import (
    DEFAULT_QUEUE_TIMEOUT,
    check_cluster_options,
    host_list,
    make_scheduler,
)
from ._options import queue_timeout as check_queue_timeout
from ._owner import local_owner
from ._protocol import (
    CreateSandbox,
    Done,
    InspectSandbox,
    ListSandboxes,
    Ping,
    Pong,
    RemoveSandbox,
    Reply,
    Request,
    SandboxChanged,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    SandboxSpec,
    StartSandbox,
    StopSandbox,
)
from ._records import Host as Host  # re-exported: the public names live in `_cluster`
from ._records import SandboxRecord as SandboxRecord
from ._room import Room, room_for
from ._scheduler import Action, Demand, Resources, Scheduler
from ._ssh import SshOptions
from ._states import TRANSITIONS, SandboxEvent, SandboxState
from ._statistics import ClusterStatistics

log = logging.getLogger("rock_core")

R = TypeVar("R", bound=Reply)

RECONNECT_BASE = 0.5  # seconds before the first reconnect; doubles up to RECONNECT_MAX
RECONNECT_MAX = 15.0
SWEEP_EVERY = 1024  # creates between two sweeps of deleted records
FORGET_DELETED_AFTER = 300.0  # seconds a deleted sandbox's record is kept (for status, retries)
_E = SandboxEvent
_S = SandboxState


class Cluster:
    """Sandboxes across the agents of `open_cluster`; every method is safe to call concurrently."""

    def __init__(
        self,
        owner: str,
        scheduler: Scheduler,
        *,
        lease: float = 60.0,
        grace: float = 30.0,
        heartbeat: float = 5.0,
        heartbeat_timeout: float = 10.0,
        ssh: SshOptions | None = None,
        admin: bool = False,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
    ) -> None:
        self.owner = owner
        self.admin = admin
        self.scheduler = scheduler
        self.hosts: dict[str, Host] = {}
        self.lease = lease
        self.grace = grace
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout
        self.ssh = ssh
        self.queue_timeout = queue_timeout  # a create's default wait for room (None: no bound)
        self.waits = QueueWaits(self._room, scheduler.has_room)  # waits for room (`_admission`)
        self._records: dict[str, SandboxRecord] = {}
        self._creates = 0
        self._tg: TaskGroup | None = None
        self._attached: dict[str, Attachment] = {}  # open warm pools by name (`_attach`)
        self._capacity = anyio.Event()  # set (and replaced) whenever room may have grown

    # ------------------------------------------------------------------ hosts

    def _add_host(self, address: str, connection: AgentConnection) -> Host:
        """Register a connected agent as a new host (no supervision: the caller owns the link)."""
        welcome = connection.welcome
        if welcome.host_id in self.hosts:
            raise AlreadyExists(f"two addresses lead to the same host {welcome.host_id!r}")
        host = self.hosts[welcome.host_id] = Host(welcome.host_id, address, connection)
        self._listen(host, connection)
        self._apply(
            self.scheduler.add_host(
                welcome.host_id,
                Resources(cpus=welcome.cpus, memory=welcome.memory),
                images=welcome.images,
            )
        )
        return host

    def _attach(self, address: str, connection: AgentConnection, host: Host | None) -> Host:
        """A link to `address` is up: register the host, or bring a known one back."""
        if host is None:
            return self._add_host(address, connection)
        welcome = connection.welcome
        if welcome.host_id != host.host_id:
            raise TransportError(
                f"{address} now answers as host {welcome.host_id!r}, not {host.host_id!r}"
            )
        if host.instance and welcome.instance != host.instance:
            log.warning(
                "the agent on %s restarted: it adopted its containers, but their sessions are gone",
                host.host_id,
            )
        if host.state == "lost":
            self._apply(
                self.scheduler.add_host(
                    host.host_id,
                    Resources(cpus=welcome.cpus, memory=welcome.memory),
                    images=welcome.images,
                )
            )
            if host.drained:
                self.scheduler.drain_host(host.host_id)
        else:
            self.scheduler.host_images(host.host_id, welcome.images)
            if not host.drained:
                self._apply(self.scheduler.drain_host(host.host_id, False))
        host.connection = connection
        self._listen(host, connection)
        host.instance = welcome.instance
        host.state = "connected"
        host.down_since = None
        host.generation += 1
        log.info("host %s connected (%s)", host.host_id, address)
        return host

    def _listen(self, host: Host, connection: AgentConnection) -> None:
        """Apply what the agent of `host` reports unasked (`SandboxChanged`) to our records."""
        host_id = host.host_id

        def on_event(change: SandboxChanged) -> None:
            record = self._records.get(change.sandbox_id)
            if record is not None and record.host == host_id:
                self._apply_change(record, change)

        connection.on_event = on_event

    def _apply_change(self, record: SandboxRecord, change: SandboxChanged) -> None:
        """A sandbox changed outside our requests (a deadline, another program, the engine).

        Only settled states move: a record with a request of ours in flight (creating,
        stopping, deleting) is left to that request, which reports the same outcome.
        """
        state, expired = record.state, change.cause in ("idle", "lifetime")
        reason = change.reason or change.cause
        if change.state == "stopped" and state is _S.RUNNING:
            record.fire(_E.EXPIRE if expired else _E.STOP, reason)
            record.fire(_E.STOPPED, reason)
        elif change.state == "running" and state is _S.STOPPED:
            record.fire(_E.START, reason)
            record.fire(_E.CREATED, reason)
        elif change.state == "deleted" and state in (_S.RUNNING, _S.STOPPED):
            if state is _S.RUNNING and expired:
                record.fire(_E.EXPIRE, reason)
            record.fire(_E.DELETE, reason)
            record.fire(_E.DELETED, reason)
            self._release(record)

    def _detach(self, host: Host, error: str) -> None:
        """The link to `host` broke: stop placing there and start its grace period."""
        host.connection = None
        host.last_error = error
        if host.state != "connected":
            return
        host.state = "reconnecting"
        host.down_since = time.monotonic()
        self._apply(self.scheduler.drain_host(host.host_id))
        log.warning("lost the link to host %s: %s", host.host_id, error or "closed")
        if self._tg is not None:
            self._tg.start_soon(self._grace_timer, host, host.generation)

    async def _grace_timer(self, host: Host, generation: int) -> None:
        await anyio.sleep(self.grace)
        if host.generation == generation and host.state == "reconnecting":
            self._mark_lost(host)

    def _mark_lost(self, host: Host) -> None:
        host.state = "lost"
        self.scheduler.remove_host(host.host_id)
        reason = f"host {host.host_id} unreachable for more than {self.grace:g} s"
        for record in self._records.values():
            if record.host != host.host_id:
                continue
            record.holds_resources = False
            if (record.state, _E.LOSE) in TRANSITIONS:
                record.fire(_E.LOSE, reason)
        log.warning("host %s is lost: %s", host.host_id, reason)

    async def _supervise(
        self, address: HostAddress, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Keep one host connected: heartbeats, reconnects with backoff, reconciliation."""
        host: Host | None = None
        started = False
        failures = 0
        while True:
            error = ""
            try:
                async with open_host(
                    address, owner=self.owner, lease=self.lease, ssh=self.ssh, admin=self.admin
                ) as conn:
                    host = self._attach(address.text, conn, host)
                    await self._reconcile(host, conn)
                    if not started:
                        task_status.started()
                        started = True
                    failures = 0
                    error = await self._heartbeat(conn)
            except RockError as exc:
                if not started or host is None:
                    raise  # the first connection: the caller hears of it
                error = str(exc)
            self._detach(host, error)
            failures += 1
            delay = min(RECONNECT_MAX, RECONNECT_BASE * 2 ** min(failures - 1, 10))
            await anyio.sleep(delay * random.uniform(0.5, 1.5))

    async def _heartbeat(self, conn: AgentConnection) -> str:
        """Ping until the link fails; return why. Each ping also renews this owner's lease."""
        while True:
            with anyio.move_on_after(self.heartbeat):
                await conn.wait_closed()
                return "the agent closed the link"
            try:
                with anyio.fail_after(self.heartbeat_timeout):
                    await conn.call(Ping(id=conn.next_id()), Pong)
            except TimeoutError:
                return f"no heartbeat answer within {self.heartbeat_timeout:g} s"
            except TransportError as exc:
                return str(exc)

    async def _reconcile(self, host: Host, conn: AgentConnection) -> None:
        """Match the agent's view of this owner's containers with ours."""
        reply = await conn.call(
            ListSandboxes(id=conn.next_id(), owner=self.owner), SandboxListReply
        )
        found = {info.sandbox_id: info for info in reply.sandboxes}
        for change in reply.removed:  # removed by the agent while we were away: not failures
            gone = self._records.get(change.sandbox_id)
            if gone is not None and gone.host == host.host_id and gone.sandbox_id not in found:
                self._apply_change(gone, change)
        for record in list(self._records.values()):
            if record.host != host.host_id or record.state in (_S.PENDING, _S.CREATING):
                continue
            self._reconcile_one(host, record, found.pop(record.sandbox_id, None))
        for info in found.values():
            if info.sandbox_id in self._records:
                continue  # a create in flight, or a record on another host
            self._adopt(host, info)

    def _reconcile_one(self, host: Host, record: SandboxRecord, info: SandboxInfo | None) -> None:
        state = record.state
        if info is None:
            if state is _S.DELETING:
                record.fire(_E.DELETED, "gone from the host")
            elif state not in (_S.DELETED, _S.FAILED):
                record.fire(
                    _E.FAIL,
                    f"its container is gone from host {host.host_id} (removed, or reaped when "
                    "this program's lease ended)",
                )
            self._release(record)
            return
        record.info = info
        running = info.state == "running"
        if state is _S.LOST:
            record.fire(_E.FOUND_RUNNING if running else _E.FOUND_STOPPED, "host reconciled")
            self._hold(host, record)
        elif state is _S.RUNNING and not running:
            cause = info.deadlines.stop_cause if info.deadlines else ""
            if cause:  # its agent stopped it (a deadline, or a request) while we were away
                why = f"stopped while the link was down ({cause})"
                change = SandboxChanged(
                    sandbox_id=record.sandbox_id, state="stopped", cause=cause, reason=why
                )
                self._apply_change(record, change)
            else:
                record.fire(_E.FAIL, f"its container is {info.state} (exit code {info.exit_code})")
        elif state is _S.FAILED and record.retryable:
            pass  # the create's reply was lost: kept for a retry with its id (or a delete)
        elif state in (_S.DELETING, _S.FAILED) and self._tg is not None:
            # We meant to delete it, or its create failed on a link that broke: remove it.
            self._tg.start_soon(self._finish_delete, record)

    def _adopt(self, host: Host, info: SandboxInfo) -> None:
        """A sandbox of this owner that this cluster does not know: take it over."""
        spec = info.spec or SandboxSpec(image=info.image)
        record = SandboxRecord(info.sandbox_id, spec)
        record.host = host.host_id
        record.info = info
        record.fire(_E.PLACE, f"adopted on {host.host_id}")
        record.fire(_E.CREATED, "found running" if info.state == "running" else "found")
        if info.state != "running":
            record.fire(_E.STOP, "found stopped")
            record.fire(_E.STOPPED, f"container {info.state}")
        record.placed.set()
        record.settled.set()
        self._records[info.sandbox_id] = record
        self._hold(host, record)
        log.info("adopted sandbox %s on host %s", info.sandbox_id, host.host_id)

    def _hold(self, host: Host, record: SandboxRecord) -> None:
        if record.holds_resources:
            return
        spec = record.spec
        self.scheduler.adopt(
            record.sandbox_id, host.host_id, Demand(cpus=spec.cpus, memory=spec.memory)
        )
        record.holds_resources = True

    async def _finish_delete(self, record: SandboxRecord) -> None:
        with contextlib.suppress(RockError):
            if record.state is _S.FAILED:
                record.fire(_E.DELETE, "leftover of a failed create")
            await self._remove_on_host(record)

    async def _connect_all(self, addresses: list[HostAddress]) -> None:
        """Connect every host at once; raise the first failure (after logging the others)."""
        assert self._tg is not None
        tg = self._tg
        failures: list[tuple[str, RockError]] = []

        async def connect(address: HostAddress) -> None:
            try:
                await tg.start(self._supervise, address)
            except RockError as exc:
                failures.append((address.text, exc))

        async with anyio.create_task_group() as starting:
            for address in addresses:
                starting.start_soon(connect, address)
        if failures:
            # The first is raised; the others would be lost, so they are logged.
            for text, exc in failures[1:]:
                log.error("cannot connect to host %s: %s", text, exc)
            first = failures[0][1]
            if len(failures) > 1:
                first.add_note(f"{len(failures)} of {len(addresses)} hosts failed to connect")
            raise first

    def drain_host(self, host_id: str, draining: bool = True) -> None:
        """Stop (or resume) placing new sandboxes on a host; its sandboxes stay."""
        host = self.hosts.get(host_id)
        if host is None:
            raise NotFound(f"no host {host_id!r} in this cluster (hosts: {sorted(self.hosts)})")
        if not isinstance(draining, bool):
            raise BadRequest(f"draining must be True or False, got {draining!r}")
        host.drained = draining
        if host.state == "connected":
            self._apply(self.scheduler.drain_host(host_id, draining))

    def _apply(self, actions: list[Action]) -> None:
        # Every scheduler change goes through here: room may have grown, so wake the waiters.
        self._capacity.set()
        self._capacity = anyio.Event()
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
        queue_timeout: float | UnsetType | None = UNSET,
    ) -> SandboxRecord:
        """Place and start a sandbox; with a `sandbox_id`, a retry returns the same sandbox.

        A create that finds no room waits in the queue, at most `queue_timeout` seconds (default:
        the cluster's; None: no limit), then raises `CapacityError` (see `_admission`).
        """
        timeout = (
            self.queue_timeout if queue_timeout is UNSET else check_queue_timeout(queue_timeout)
        )
        chosen = sandbox_id is not None
        sandbox_id = new_sandbox_id() if sandbox_id is None else sandbox_id
        check_admission(
            sandbox_id, spec, [h.connection for h in self.hosts.values() if h.connection]
        )
        existing = self._records.get(sandbox_id)
        if existing is not None and existing.state is not _S.DELETED:
            if existing.spec != spec:
                raise AlreadyExists(
                    f"sandbox {sandbox_id!r} already exists with a different spec",
                    sandbox_id=sandbox_id,
                )
            await existing.settled.wait()
            if existing.retryable:
                return await self._retry_create(existing)
            if existing.state is _S.FAILED and existing.error is not None:
                raise existing.error
            if existing.state not in (_S.FAILED, _S.DELETED, _S.DELETING, _S.PENDING):
                return existing
            # Its create was cancelled or it was deleted meanwhile: this one starts afresh.
        self._sweep_deleted()
        record = SandboxRecord(sandbox_id, spec)
        record.chosen_id = chosen
        self._records[sandbox_id] = record
        try:
            await self._place(record, timeout)
            with anyio.CancelScope() as scope:
                record.create_scope = scope
                await self._start(record)
            if scope.cancelled_caught:
                raise SandboxNotFound(
                    f"sandbox {sandbox_id} was deleted while it was being created",
                    sandbox_id=sandbox_id,
                )
        except BaseException as exc:
            if isinstance(exc, RockError):
                record.error = exc
            raise
        finally:
            record.create_scope = None
            record.settled.set()
        return record

    def _sweep_deleted(self) -> None:
        """Forget deleted sandboxes once in a while, so records do not grow without end."""
        self._creates += 1
        if self._creates % SWEEP_EVERY:
            return
        horizon = time.time() - FORGET_DELETED_AFTER
        for sandbox_id, record in list(self._records.items()):
            if record.state is _S.DELETED and record.lifecycle.history[-1].at < horizon:
                del self._records[sandbox_id]

    async def _retry_create(self, failed: SandboxRecord) -> SandboxRecord:
        """Create again on the same host a sandbox whose first create lost its reply.

        The agent's create is idempotent for an id and spec: it answers with the container the
        first attempt made, or makes it now. Never another host: the first container may exist.
        """
        host = self._host_of(failed)
        conn = host.link()  # HostUnavailable while the link is still down
        reply = await conn.call(
            CreateSandbox(id=conn.next_id(), sandbox_id=failed.sandbox_id, spec=failed.spec),
            SandboxReply,
        )
        current = self._records.get(failed.sandbox_id)
        if current is not failed and current is not None:
            return current  # a concurrent retry (or the reconcile) got there first
        record = SandboxRecord(failed.sandbox_id, failed.spec)
        record.chosen_id = True
        record.host = host.host_id
        record.info = reply.sandbox
        record.fire(_E.PLACE, f"create retried on {host.host_id} (first attempt: {failed.error})")
        record.fire(_E.CREATED, f"container {reply.sandbox.container_id[:12]} running")
        record.placed.set()
        record.settled.set()
        self._records[record.sandbox_id] = record
        self._hold(host, record)
        return record

    async def _place(self, record: SandboxRecord, queue_timeout: float | None) -> None:
        spec = record.spec
        demand = Demand(cpus=spec.cpus, memory=spec.memory, image=spec.image)
        self._apply(self.scheduler.submit(record.sandbox_id, demand, time.monotonic()))
        placed = False
        try:
            await self.waits.wait(record.sandbox_id, demand, record.placed, queue_timeout)
            placed = True
        finally:
            if not placed:
                # Leave no request behind in the queue, whatever ended the wait.
                if record.state is _S.PENDING:
                    if record.holds_resources:  # placed just as the wait was cancelled
                        self._release(record, failed_start=True)
                    else:
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
            conn = host.link()
            check_features(conn, record.spec)
            reply = await conn.call(
                CreateSandbox(id=conn.next_id(), sandbox_id=record.sandbox_id, spec=record.spec),
                SandboxReply,
            )
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                self._release(record, failed_start=True)
                reason = str(exc) if isinstance(exc, RockError) else "cancelled"
                record.fire_if(_E.CREATE_FAILED, reason)
                if not isinstance(exc, RockError):
                    # Cancelled mid-create: the container may exist; do not leave it behind.
                    await self._remove_quietly(host, record.sandbox_id)
            raise
        if record.holds_resources:
            self._apply(self.scheduler.started(record.sandbox_id, time.monotonic()))
        record.info = reply.sandbox
        record.fire_if(_E.CREATED, f"container {reply.sandbox.container_id[:12]} running")

    def _host_of(self, record: SandboxRecord) -> Host:
        if record.host is None or record.host not in self.hosts:
            raise SandboxFailed(f"sandbox {record.sandbox_id} has no reachable host")
        host = self.hosts[record.host]
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
            request=lambda i: StopSandbox(id=i, sandbox_id=sandbox_id, timeout=timeout),
        )

    async def start_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Start a stopped sandbox again (its files are kept; sessions are new)."""
        return await self._change(
            sandbox_id,
            "start",
            already=_S.RUNNING,
            events=(_E.START, _E.CREATE_FAILED, _E.CREATED),
            reasons=("restart failed", "container running again"),
            request=lambda i: StartSandbox(id=i, sandbox_id=sandbox_id),
        )

    async def _change(
        self,
        sandbox_id: str,
        doing: str,
        *,
        already: SandboxState,
        events: tuple[SandboxEvent, SandboxEvent, SandboxEvent],
        reasons: tuple[str, str],
        request: Callable[[int], Request],
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
                reply = await conn.call(request(conn.next_id()), SandboxReply)
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
            if record.holds_resources:
                # Placed, but its create has not resumed yet: give the room back now.
                self._release(record, failed_start=True)
            else:
                with contextlib.suppress(RockError):
                    self._apply(self.scheduler.cancel(sandbox_id))
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
            await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id=record.sandbox_id), Done)
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
        reply = await conn.call(
            InspectSandbox(id=conn.next_id(), sandbox_id=sandbox_id), SandboxReply
        )
        self.record(sandbox_id).info = reply.sandbox
        return reply.sandbox

    async def list_host_sandboxes(self, *, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox on every connected host (all owners unless one is named)."""
        found: list[SandboxInfo] = []
        for host in self.hosts.values():
            if host.state != "connected":
                continue
            conn = host.link()
            reply = await conn.call(ListSandboxes(id=conn.next_id(), owner=owner), SandboxListReply)
            found.extend(reply.sandboxes)
        return found

    async def remove_any(self, sandbox_id: str) -> None:
        """Remove a sandbox by id on whichever host has it, whoever owns it."""
        away = [h.host_id for h in self.hosts.values() if h.state != "connected"]
        for host in self.hosts.values():
            if host.state != "connected":
                continue
            conn = host.link()
            try:
                await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id=sandbox_id), Done)
            except SandboxNotFound:
                continue
            record = self._records.get(sandbox_id)
            if record is not None and record.state is not _S.DELETED:
                if record.fire_if(_E.DELETE, "removed by id"):
                    record.fire(_E.DELETED, "container removed")
                self._release(record)
            return
        also = f" (hosts not reachable now: {', '.join(away)})" if away else ""
        raise SandboxNotFound(f"no sandbox {sandbox_id!r} on any host{also}")

    # ------------------------------------------------------------------ attachments (`_attach`)

    def startable(self, demand: Demand) -> int:
        """How many creates of `demand` could start now with nobody queued (see `PoolSite`)."""
        return self.scheduler.startable(demand)

    def capacity_changed(self) -> anyio.Event:
        """Set the next time room or start slots may have grown (see `PoolSite`)."""
        return self._capacity

    async def attach(self, attachment: Attachment, run: Run) -> None:
        """Register `attachment` and start `run` in this cluster's task group (see `PoolSite`)."""
        tg = self._tg
        if tg is None:
            raise BadRequest("pools need an open cluster: open them inside its `async with`")
        name = attachment.name
        if name in self._attached:
            raise AlreadyExists(f"a pool named {name!r} is already open in this cluster")
        self._attached[name] = attachment

        async def running(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            try:
                await run(task_status=task_status)
            finally:
                self.detach(attachment)

        try:
            await tg.start(running)
        except BaseException:
            self.detach(attachment)
            raise

    def detach(self, attachment: Attachment) -> None:
        """Unregister `attachment` (no-op if it is not registered)."""
        if self._attached.get(attachment.name) is attachment:
            del self._attached[attachment.name]

    def statistics(self) -> ClusterStatistics:
        """Hosts, capacity, use and queue depth, from the scheduler; every open pool; and the
        creates waiting for room, with what each needs and how long it has waited."""
        pools = [attached.statistics() for attached in self._attached.values()]
        scheduler = self.scheduler
        return ClusterStatistics.of(
            scheduler.statistics(), pools, scheduler.queued(), time.monotonic()
        )

    def _room(self, demand: Demand) -> Room:
        """Every host's room for `demand` now (hosts whose link is down are named away)."""
        hosts = self.hosts.values()
        away = {h.host_id: f"its link is {h.state}" for h in hosts if h.state != "connected"}
        return room_for(self.scheduler.statistics(), demand, away)

    async def _remove_quietly(self, host: Host, sandbox_id: str) -> None:
        with contextlib.suppress(RockError), anyio.move_on_after(30):
            conn = host.link()
            await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id=sandbox_id), Done)

    async def _cleanup(self) -> None:
        """Delete every sandbox this cluster still holds (on exit, even after a crash)."""
        with anyio.CancelScope(shield=True):
            for attached in list(self._attached.values()):
                await attached.halt()  # no refill may start while the sandboxes go
        live = [
            r
            for r in self._records.values()
            if r.state not in (_S.DELETED, _S.PENDING, _S.LOST)
            and r.host in self.hosts
            and self.hosts[r.host].state == "connected"
        ]

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
    hosts: Sequence[str] | str = ("local",),
    *,
    owner: str | None = None,
    policy: str = "spread",
    max_queue: int = 10_000,
    max_starts: int = 8,
    lease: float = 60.0,
    grace: float = 30.0,
    heartbeat: float = 5.0,
    heartbeat_timeout: float = 10.0,
    ssh: SshOptions | None = None,
    admin: bool = False,
    queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
) -> AsyncIterator[Cluster]:
    """Connect to every host's agent; on exit delete this cluster's sandboxes and disconnect.

    - `hosts`: addresses (see `rock_core._addresses`): ``local``, ``unix:///path``,
      ``ssh://[user@]host[:port]``, with ``[01-40]`` ranges. All are connected at once; the
      first failure is raised (each kind of failure has its own error class).
    - `owner`: who the sandboxes belong to; a program that reconnects with the same owner
      before its lease ends adopts its sandboxes again. Default: a fresh id for this process.
    - `lease`: seconds an agent keeps this owner's sandboxes after it stops hearing from it.
      It must be longer than ``heartbeat + heartbeat_timeout``: a live link can be silent
      that long between two answered pings, and an agent drops a link silent for longer than
      its lease (see `_options`).
    - `grace`: seconds a host may stay unreachable before its sandboxes are marked `lost`.
    - `heartbeat`, `heartbeat_timeout`: how often each link is pinged, and how long an answer
      may take before the link counts as broken (then: reconnect with backoff and jitter).
    - `ssh`: how to connect to ``ssh://`` hosts (`SshOptions`; default: the user's setup).
    - `admin`: connect as an administrator (the `rock` CLI): act on the sandboxes of every
      owner of this user (of every user, as root) by id: list, stop, start, remove, run,
      read and write files; create none.
    - `queue_timeout`: seconds a create may wait for room before `CapacityError` (default 60;
      None: no limit); each create may set its own.

    Every option is checked first: a bad one raises `BadRequest` naming it and its value.
    """
    addresses = [parse(text) for text in expand(host_list(hosts))]
    if not addresses:
        raise BadRequest("a cluster needs at least one host")
    scheduler = make_scheduler(policy, max_queue, max_starts)
    check_cluster_options(
        owner=owner,
        lease=lease,
        grace=grace,
        heartbeat=heartbeat,
        heartbeat_timeout=heartbeat_timeout,
        ssh=ssh,
        admin=admin,
    )
    cluster = Cluster(
        owner or local_owner(),
        scheduler,
        lease=lease,
        grace=grace,
        heartbeat=heartbeat,
        heartbeat_timeout=heartbeat_timeout,
        ssh=ssh,
        admin=admin,
        queue_timeout=check_queue_timeout(queue_timeout),
    )
    with unwrap_single_errors():
        async with anyio.create_task_group() as tg:
            cluster._tg = tg
            try:
                await cluster._connect_all(addresses)
                try:
                    yield cluster
                finally:
                    await cluster._cleanup()
            finally:
                tg.cancel_scope.cancel()
