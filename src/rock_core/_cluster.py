"""The embedded core: `open_cluster` connects to agents and performs the cluster's decisions.

Rules:
- This module decides nothing about hosts and records: `ClusterState.handle` (`_cluster_state`)
  does, and the scheduler under it places. The `Cluster` is a thin driver: it reports what
  happened as events (with `now` from anyio's clock), performs the actions it gets back, and
  owns the task group where grace timers, leftover removals, host supervisors and pools run.
- One supervisor per host (`_supervisor`) keeps its link alive; it knows no records.
- A sandbox operation (create, stop, start, delete) is one task of its caller: it waits for
  its placement or lock, sends its request, and reports the outcome (`_operations`).
- Any-owner operations of an administrator live in `_admin`.
- A training program is its own admin: no server to run.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.abc import TaskGroup
from msgspec import UNSET, UnsetType

from . import _admin, _checkpoints, _core_report, _operations
from ._addresses import expand
from ._admission import QueueWaits, check_admission
from ._attach import Attachment, Run
from ._cluster_events import (
    Adopt,
    Capacity,
    Do,
    Event,
    GraceOver,
    RemovedByAdmin,
    RemoveLeftover,
    Reopen,
    StartAsked,
    StartBackoff,
    StartGrace,
    StopAsked,
    Wake,
)
from ._cluster_ops import connection_of, record_of
from ._cluster_state import ClusterState, Subscribable
from ._connection import AgentConnection, unwrap_single_errors
from ._create_flow import place_and_create
from ._create_times import CreateTimes
from ._errors import AlreadyExists, BadRequest, NotFound, RockError
from ._gc_tuning import tuned_gc
from ._host_follow import connect_hosts
from ._host_links import HostLinks
from ._host_source import HostSource
from ._hosts import AddressConnector, Connector
from ._options import ClusterOptions, cluster_options, host_list
from ._options import queue_timeout as check_queue_timeout
from ._owner import local_owner
from ._protocol import InspectSandbox, Reply, Request, SandboxInfo, SandboxReply, SandboxSpec
from ._records import Host as Host  # re-exported: the public names live in `_cluster`
from ._records import SandboxRecord as SandboxRecord
from ._room import Room, room_for
from ._scheduler import Demand, Scheduler
from ._states import SandboxEvent, SandboxState
from ._statistics import ClusterStatistics

log = logging.getLogger("rock_core")

SWEEP_EVERY = 1024  # creates between two sweeps of deleted records
FORGET_DELETED_AFTER = 300.0  # seconds a deleted sandbox's record is kept (for status, retries)
_E = SandboxEvent
_S = SandboxState
R = TypeVar("R", bound=Reply)


class Cluster(_checkpoints.CheckpointMethods, Subscribable):
    """Sandboxes across the agents of `open_cluster`; every method is safe to call concurrently."""

    def __init__(
        self, owner: str, scheduler: Scheduler, options: ClusterOptions | None = None
    ) -> None:
        self.options = options = options or ClusterOptions()
        self.owner = owner
        self.admin = options.admin
        self.scheduler = scheduler
        self.grace = options.grace
        self.queue_timeout = options.queue_timeout  # a create's default wait (None: no bound)
        self.state = ClusterState(scheduler, grace=options.grace)
        self.waits = QueueWaits(self._room, scheduler.has_room)  # waits for room (`_admission`)
        self._creates = 0
        self._tg: TaskGroup | None = None
        self._attached: dict[str, Attachment] = {}  # open warm pools by name (`_attach`)
        self.create_times = CreateTimes()  # as callers saw them (`rock_core.metrics`)
        self._capacity = anyio.Event()  # set (and replaced) whenever room may have grown
        self._links = HostLinks(self._handle, self.state.hosts, owner, options)
        self.unreachable: dict[str, RockError] = {}  # by address: no answer at a partial open

    @property
    def hosts(self) -> dict[str, Host]:
        """Every host that ever joined, by id (connected or not)."""
        return self.state.hosts

    # ------------------------------------------------------------------ events and actions

    def _handle(self, event: Event) -> list[Do]:
        """Report `event` to the state now; perform what it asks; return every action."""
        return self._perform(self.state.handle(event, anyio.current_time()))

    def _perform(self, actions: list[Do]) -> list[Do]:
        """Perform what needs no caller (`SendCreate` and quiet removals are the caller's)."""
        for action in actions:
            if isinstance(action, Capacity):
                self._capacity.set()
                self._capacity = anyio.Event()
            elif isinstance(action, Wake):
                self.state.records[action.sandbox_id].placed.set()
            elif isinstance(action, Adopt):
                log.info("adopted sandbox %s on host %s", action.sandbox_id, action.host_id)
            elif isinstance(action, StartGrace) and self._tg is not None:
                self._tg.start_soon(self._grace_timer, action)
            elif isinstance(action, StartBackoff) and self._tg is not None:
                self._tg.start_soon(self._backoff_timer, action)
            elif isinstance(action, RemoveLeftover) and self._tg is not None:
                remove = _operations.remove_leftover
                self._tg.start_soon(remove, self.state, self._handle, action.sandbox_id)
        return actions

    def _withdraw(self, record: SandboxRecord) -> None:
        out: list[Do] = []
        self.state.withdraw(record, anyio.current_time(), out)
        self._perform(out)

    async def _grace_timer(self, start: StartGrace) -> None:
        await anyio.sleep(start.seconds)
        self._handle(GraceOver(start.host_id, start.generation))

    async def _backoff_timer(self, start: StartBackoff) -> None:
        await anyio.sleep(start.seconds)
        self._handle(Reopen(start.host_id, start.refusals))

    # ------------------------------------------------------------------ hosts

    def drain_host(self, host_id: str, draining: bool = True) -> None:
        """Stop (or resume) placing new sandboxes on a host; its sandboxes stay."""
        host = self.hosts.get(host_id)
        if host is None:
            raise NotFound(f"no host {host_id!r} in this cluster (hosts: {sorted(self.hosts)})")
        if not isinstance(draining, bool):
            raise BadRequest(f"draining must be True or False, got {draining!r}")
        out: list[Do] = []
        self.state.drain(host, draining, out)
        self._perform(out)

    # ------------------------------------------------------------------ sandboxes (`_operations`)

    def record(self, sandbox_id: str) -> SandboxRecord:
        """The record of a sandbox this cluster knows, or `SandboxNotFound`."""
        return record_of(self.state, sandbox_id)

    def records(self) -> list[SandboxRecord]:
        """Every sandbox this cluster has created and not yet forgotten."""
        return list(self.state.records.values())

    def connection(self, sandbox_id: str) -> AgentConnection:
        """The link to the agent that holds a sandbox."""
        return connection_of(self.state, sandbox_id, anyio.current_time())

    async def call(self, sandbox_id: str, request: Request, expect: type[R]) -> R:
        """Send a request about a sandbox to its host's agent."""
        return await self.connection(sandbox_id).call(request, expect)

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """The agent's live view of a sandbox."""
        reply = await self.call(sandbox_id, InspectSandbox(sandbox_id=sandbox_id), SandboxReply)
        self.record(sandbox_id).info = reply.sandbox
        return reply.sandbox

    async def stop_sandbox(self, sandbox_id: str, *, timeout: float = 10.0) -> SandboxRecord:
        """Stop a running sandbox (kept, restartable); stopping a stopped one is a no-op."""
        return await _operations.change(self.state, self._handle, StopAsked(sandbox_id, timeout))

    async def start_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Start a stopped sandbox again (its files are kept; sessions are new)."""
        return await _operations.change(self.state, self._handle, StartAsked(sandbox_id))

    async def delete_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Remove a sandbox and its container; deleting a deleted one is a no-op.

        A create in flight is cancelled first (its caller gets `SandboxNotFound`).
        """
        return await _operations.delete(self.state, self._handle, sandbox_id)

    # ------------------------------------------------------------------ creates

    async def create_sandbox(
        self,
        spec: SandboxSpec,
        *,
        sandbox_id: str | None = None,
        queue_timeout: float | UnsetType | None = UNSET,
    ) -> SandboxRecord:
        """Place and start a sandbox; with a `sandbox_id`, a retry returns the same sandbox.

        A create that finds no room waits in the queue, at most `queue_timeout` seconds (default:
        the cluster's; None: no limit), then raises `CapacityError` (see `_admission`). A host
        whose agent says it is full (other programs use it) sends it back to wait (`_create_flow`).
        """
        started = anyio.current_time()
        timeout = (
            self.queue_timeout if queue_timeout is UNSET else check_queue_timeout(queue_timeout)
        )
        chosen = sandbox_id is not None
        sandbox_id = new_sandbox_id() if sandbox_id is None else sandbox_id
        check_admission(  # a generator: only a disk limit reads the hosts
            sandbox_id, spec, (h.connection for h in self.hosts.values() if h.connection)
        )
        existing = self.state.records.get(sandbox_id)
        if existing is not None and existing.state is not _S.DELETED:
            if existing.spec != spec:
                raise AlreadyExists(
                    f"sandbox {sandbox_id!r} already exists with a different spec",
                    sandbox_id=sandbox_id,
                )
            await existing.settled.wait()
            if existing.retryable:
                return await _operations.retry_create(self.state, self._handle, existing)
            if existing.state is _S.FAILED and existing.error is not None:
                raise existing.error
            if existing.state not in (_S.FAILED, _S.DELETED, _S.DELETING, _S.PENDING):
                return existing
            # Its create was cancelled or it was deleted meanwhile: this one starts afresh.
        self._creates += 1
        if self._creates % SWEEP_EVERY == 0:  # forget old deleted records once in a while
            self.state.forget_deleted(time.time() - FORGET_DELETED_AFTER)
        record = SandboxRecord(sandbox_id, spec)
        record.chosen_id = chosen
        try:
            gate = self.options.start_gate  # shared permits, if any (`_start_gate`)
            await place_and_create(
                self.state, self._handle, self._withdraw, self.waits, record, timeout, gate
            )
        except BaseException as exc:
            if isinstance(exc, RockError):
                record.error = exc
            raise
        finally:
            record.create_scope = None
            record.settled.set()
        self.create_times.created(spec, anyio.current_time() - started)
        return record

    # ------------------------------------------------------------------ administration (`_admin`)

    async def list_host_sandboxes(self, *, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox on every connected host (all owners unless one is named)."""
        return await _admin.list_host_sandboxes(self.hosts.values(), owner)

    async def sandboxes_by_host(self, *, owner: str = "") -> dict[str, list[SandboxInfo]]:
        """`list_host_sandboxes` by host id (see `_admin.sandboxes_by_host`)."""
        return await _admin.sandboxes_by_host(self.hosts.values(), owner)

    async def remove_any(self, sandbox_id: str) -> None:
        """Remove a sandbox by id on whichever host has it, whoever owns it."""
        await _admin.remove_any(self.hosts.values(), sandbox_id)
        self._handle(RemovedByAdmin(sandbox_id))

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
            scheduler.statistics(), pools, scheduler.queued(), anyio.current_time()
        )

    def _room(self, demand: Demand) -> Room:
        """Every host's room for `demand` now (hosts whose link is down are named away)."""
        hosts = self.hosts.values()
        away = {h.host_id: f"its link is {h.state}" for h in hosts if h.state != "connected"}
        return room_for(self.scheduler.statistics(), demand, away)

    async def _cleanup(self) -> None:
        """Delete every sandbox this cluster still holds (on exit, even after a crash)."""
        with anyio.CancelScope(shield=True):
            for attached in list(self._attached.values()):
                await attached.halt()  # no refill may start while the sandboxes go
        await _operations.delete_all(self.state, self._handle)


def new_sandbox_id() -> str:
    """A fresh random sandbox id."""
    return "sb-" + secrets.token_hex(6)


@asynccontextmanager
async def running(
    cluster: Cluster, connectors: Sequence[Connector] | HostSource, *, partial: bool = False
) -> AsyncIterator[None]:
    """Run `cluster` over `connectors` (one host each, or a `HostSource`): connect them all; on
    exit delete its sandboxes, then disconnect. `BadRequest` for no connector. With `partial`,
    hosts that do not answer are left out (in `Cluster.unreachable`) unless none answers."""
    if not isinstance(connectors, HostSource) and not connectors:
        raise BadRequest("a cluster needs at least one host")
    with unwrap_single_errors():
        async with anyio.create_task_group() as tg:
            cluster._tg = tg
            try:
                failed = cluster.unreachable if partial else None
                await connect_hosts(cluster, tg, connectors, failed)
                tg.start_soon(_core_report.report_changes, cluster.statistics, cluster.hosts.values)
                try:
                    yield
                finally:
                    await cluster._cleanup()
            finally:
                cluster.state.feed.close()  # after the cleanup's deletes: subscribers saw them
                tg.cancel_scope.cancel()


@asynccontextmanager
async def open_cluster(
    hosts: Sequence[str | Connector] | str | HostSource = ("local",),
    options: ClusterOptions | None = None,
    **changes: Any,
) -> AsyncIterator[Cluster]:
    """Connect to every host's agent; on exit delete this cluster's sandboxes and disconnect.

    - `hosts`: addresses (see `rock_core._addresses`): ``local``, ``unix:///path``,
      ``ssh://[user@]host[:port]``, with ``[01-40]`` ranges; or `Connector` objects (a name
      and a way to open a byte stream to an agent, such as an in-memory one). All are
      connected at once; the first failure is raised (each kind of failure has its own class).
      Or a `HostSource` (a hostfile, a Slurm job, a Ray cluster), followed as it changes.
    - `options`: a `ClusterOptions` (documented there: owner, policy, queue and start limits,
      lease, grace, heartbeats, ssh, admin, queue_timeout, gc_tuning); `changes`: the same
      fields as keywords, applied on top (``open_cluster(["local"], lease=120)``).

    Every option is checked first: a bad one raises `BadRequest` naming it and its value.
    """
    opts = cluster_options(options, **changes)
    connectors = hosts if isinstance(hosts, HostSource) else connectors_for(hosts, opts)
    cluster = Cluster(opts.owner or local_owner(), opts.scheduler(), opts)
    with tuned_gc(opts.gc_tuning):
        async with running(cluster, connectors):
            yield cluster


def connectors_for(hosts: object, opts: ClusterOptions) -> list[Connector]:
    """One connector per host of `hosts` (addresses expanded; `BadRequest` for none)."""
    connectors: list[Connector] = []
    for host in host_list(hosts, Connector):
        if isinstance(host, str):  # a given connector keeps its own settings
            connectors += [AddressConnector(text, opts.ssh) for text in expand([host])]
        else:
            connectors.append(host)
    if not connectors:
        raise BadRequest("a cluster needs at least one host")
    return connectors
