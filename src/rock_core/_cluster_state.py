"""The cluster's decisions, sans-IO: `ClusterState.handle(event, now) -> actions`.

The events and actions are `_cluster_events`'s.

Rules:
- Plain synchronous code: no awaits, sleeps, sockets or clocks. Time comes in as `now` (the
  driver's `anyio.current_time()`); what must happen outside comes back as actions, which the
  driver (`_cluster`) performs and whose outcomes it reports back as events.
- The scheduler decides placement; this state calls it and turns its placements into `Wake`
  actions. Every call that changes the scheduler also returns `Capacity`: room may have grown.
- Sandboxes move only through their table (`_states`), hosts only through theirs (`_link`).
- A link that goes down starts one grace timer (`StartGrace`, tagged with the link's
  generation); a `GraceOver` of an earlier generation, or for a host that came back, is dropped.
- Reconcile (`Listing`) matches the agent's view of this owner's containers with the records:
  a record whose container is gone fails (or is deleted, if it was being deleted); a lost one
  is found again; a stopped one is stopped with its agent's cause; a failed create whose reply
  was lost is kept for a retry; leftovers (a delete the link broke under, a create that
  failed) are removed (`RemoveLeftover`), but a sandbox that failed after it was made (a lost
  stop or start reply) keeps its container for its owner to decide; unknown containers are
  adopted (`Adopt`). Records with a create in flight are left to that create.
- A create the agent refused as full (`HostSaidFull`) keeps off that host first (the scheduler
  closes it and says for how long: `StartBackoff`, then `Reopen`), then gives its room back and
  goes back to `pending`: its caller waits for room again, as if the ledger had said no room.
- A change pushed by an agent (`Changed`) moves only settled states: a record with a request of
  ours in flight (creating, stopping, deleting) is left to that request.
"""

from __future__ import annotations

import contextlib
import logging
from typing import assert_never

from ._cluster_events import (
    Adopt,
    Capacity,
    Changed,
    CreateAsked,
    Do,
    Event,
    Failed,
    GraceOver,
    HostSaidFull,
    LinkDown,
    LinkUp,
    Listing,
    Operation,
    Placed,
    RemoveLeftover,
    Reopen,
    Replied,
    Retried,
    SendCreate,
    SendRemove,
    StartBackoff,
    StartGrace,
    Wake,
)
from ._cluster_ops import operate
from ._deleted_log import DeletedLog
from ._end_reasons import change_end
from ._errors import AlreadyExists, NotFound, RockError, TransportError
from ._event_feed import EventFeed, Subscribable
from ._link import LinkEvent, LinkState
from ._protocol import (
    SHARED_ADMISSION,
    SandboxChanged,
    SandboxInfo,
    SandboxListReply,
    SandboxSpec,
)
from ._records import Flag, Host, SandboxRecord, StepHook
from ._scheduler import Action, Demand, Resources, Scheduler
from ._states import TRANSITIONS, EndReason, SandboxEvent, SandboxState, Transition

log = logging.getLogger("rock_core")

_E = SandboxEvent
_S = SandboxState

# ---------------------------------------------------------------------------- the state


class ClusterState:
    """Every sandbox record and host of one cluster, moved by events; see the module's rules."""

    def __init__(self, scheduler: Scheduler, *, grace: float) -> None:
        self.scheduler = scheduler
        self.grace = grace
        self.records: dict[str, SandboxRecord] = {}
        self.hosts: dict[str, Host] = {}
        self.feed = EventFeed()  # each step of each record goes to its subscribers
        self.deleted = DeletedLog()  # deleted records in that order (`forget_deleted`)
        self.on_step: StepHook = self._stepped

    def handle(self, event: Event, now: float) -> list[Do]:
        """Apply `event` at `now`; return what the driver must do."""
        if isinstance(event, Operation):  # stop, start, delete of a sandbox (`_cluster_ops`)
            return operate(self, event, now)
        out: list[Do] = []
        match event:
            case CreateAsked(record):
                self.records[record.sandbox_id] = record
                record.on_step = self.on_step
                spec = record.spec
                demand = Demand(cpus=spec.cpus, memory=spec.memory, image=spec.image)
                self._scheduled(self.scheduler.submit(record.sandbox_id, demand, now), out)
            case Placed(sandbox_id):
                record = self.records[sandbox_id]
                if record.state is _S.PENDING and record.host is not None:
                    record.fire(_E.PLACE, f"placed on {record.host}")
                    out.append(SendCreate(sandbox_id, record.host))
            case Replied(sandbox_id, info):
                record = self.records[sandbox_id]
                if record.holds_resources:
                    self._scheduled(self.scheduler.started(sandbox_id, now), out)
                record.info = info
                record.fire_if(_E.CREATED, f"container {info.container_id[:12]} running")
            case Failed(sandbox_id, reason, cancelled):
                record = self.records[sandbox_id]
                self.release(record, now, out, failed_start=True)
                record.fire_if(_E.CREATE_FAILED, reason, EndReason.USER if cancelled else None)
                if cancelled and record.host is not None:
                    out.append(SendRemove(sandbox_id, record.host, quiet=True))
            case HostSaidFull(sandbox_id, host_id, full, reason):
                self._host_full(self.records[sandbox_id], host_id, full, reason, now, out)
            case Reopen(host_id, refusals):
                scheduler = self.scheduler
                with contextlib.suppress(NotFound):  # the host was lost meanwhile
                    if scheduler.host_refusals(host_id) == refusals:  # else a later one waits
                        self._scheduled(scheduler.host_reopened(host_id), out)
            case Retried(failed, host_id, info):
                self._retried(failed, host_id, info)
            case LinkUp():
                self._link_up(event, out)
            case LinkDown(host_id, error):
                host = self.hosts[host_id]
                host.connection = None
                host.last_error = error
                if host.fire(LinkEvent.DOWN) is LinkState.CONNECTED:
                    host.down_since = now
                    self._scheduled(self.scheduler.drain_host(host_id), out)
                    log.warning("lost the link to host %s: %s", host_id, error or "closed")
                    out.append(StartGrace(host_id, host.generation, self.grace))
            case GraceOver(host_id, generation):
                host = self.hosts[host_id]
                if host.generation == generation and host.state == LinkState.RECONNECTING:
                    self._lose(host)
            case Changed(host_id, change):
                known = self.records.get(change.sandbox_id)
                if known is not None and known.host == host_id:
                    self._apply_change(known, change, now, out)
            case Listing(host_id, reply):
                self._reconcile(self.hosts[host_id], reply, now, out)
            case _:
                assert_never(event)  # a new kind of event must be handled here (mypy checks)
        return out

    # ------------------------------------------------------------------ helpers for the driver

    def release(
        self, record: SandboxRecord, now: float, out: list[Do], *, failed_start: bool = False
    ) -> None:
        """Give a record's room back to the scheduler (if it holds any)."""
        if not record.holds_resources:
            return
        record.holds_resources = False
        done = self.scheduler.start_failed if failed_start else self.scheduler.release
        self._scheduled(done(record.sandbox_id, now), out)

    def withdraw(self, record: SandboxRecord, now: float, out: list[Do]) -> None:
        """Take a pending record out of the queue, or give back the room it was just given."""
        if record.holds_resources:
            self.release(record, now, out, failed_start=True)
        else:
            try:
                self._scheduled(self.scheduler.cancel(record.sandbox_id), out)
            except RockError:
                pass  # no longer queued

    def drain(self, host: Host, draining: bool, out: list[Do]) -> None:
        """The user drains (or undrains) `host`: applied now if it is connected."""
        host.fire(LinkEvent.DRAIN)
        host.drained = draining
        if host.state == LinkState.CONNECTED:
            self._scheduled(self.scheduler.drain_host(host.host_id, draining), out)

    def hold(self, host_id: str, record: SandboxRecord) -> None:
        """Count a sandbox found (or re-created) on `host_id` against it."""
        if record.holds_resources:
            return
        spec = record.spec
        self.scheduler.adopt(record.sandbox_id, host_id, Demand(cpus=spec.cpus, memory=spec.memory))
        record.holds_resources = True

    def forget_deleted(self, before: float) -> None:
        """Forget the records of sandboxes deleted before `before` (wall-clock seconds)."""
        self.deleted.forget(self.records, before)

    def _stepped(self, record: SandboxRecord, step: Transition) -> None:
        self.deleted.note(record, step)
        self.feed.publish(record, step)

    def _host_full(
        self, record: SandboxRecord, host_id: str, full: str, reason: str, now: float, out: list[Do]
    ) -> None:
        with contextlib.suppress(NotFound):  # the host was lost meanwhile: nothing to keep off
            seconds = self.scheduler.host_refused(host_id, full)  # first: no new placement there
            out.append(StartBackoff(host_id, seconds, self.scheduler.host_refusals(host_id)))
        self.release(record, now, out, failed_start=True)
        if record.state is _S.CREATING:
            record.fire(_E.REQUEUE, reason)
            record.host = None
            record.placed = Flag()

    def _retried(self, failed: SandboxRecord, host_id: str, info: SandboxInfo) -> None:
        current = self.records.get(failed.sandbox_id)
        if current is not failed and current is not None:
            return  # a concurrent retry (or the reconcile) got there first
        record = SandboxRecord(failed.sandbox_id, failed.spec, on_step=self.on_step)
        record.chosen_id = True
        record.host = host_id
        record.info = info
        record.fire(_E.PLACE, f"create retried on {host_id} (first attempt: {failed.error})")
        record.fire(_E.CREATED, f"container {info.container_id[:12]} running")
        record.placed.set()
        record.settled.set()
        self.records[record.sandbox_id] = record
        self.hold(host_id, record)

    def _scheduled(self, actions: list[Action], out: list[Do]) -> None:
        out.append(Capacity())
        for action in actions:
            record = self.records.get(action.request_id)
            if record is None:
                continue
            record.host = action.host_id
            record.holds_resources = True
            out.append(Wake(action.request_id))

    # ------------------------------------------------------------------ links

    def _link_up(self, event: LinkUp, out: list[Do]) -> None:
        welcome = event.welcome
        shared = SHARED_ADMISSION in welcome.capabilities  # else an older agent: no caps told
        resources = Resources(welcome.cpus, welcome.memory, welcome.max_sandboxes if shared else 0)
        starts = welcome.max_starts if shared else 0  # the agent's start cap, for every program
        if event.known is None:
            if welcome.host_id in self.hosts:
                raise AlreadyExists(f"two addresses lead to the same host {welcome.host_id!r}")
            host = self.hosts[welcome.host_id] = Host(welcome.host_id, event.address, None)
            host.instance = welcome.instance
            self._scheduled(
                self.scheduler.add_host(
                    host.host_id, resources, images=welcome.images, host_max_starts=starts
                ),
                out,
            )
            return
        host = self.hosts[event.known]
        if welcome.host_id != host.host_id:
            raise TransportError(
                f"{event.address} now answers as host {welcome.host_id!r}, not {host.host_id!r}"
            )
        if host.instance and welcome.instance != host.instance:
            log.warning(
                "the agent on %s restarted: it adopted its containers, but their sessions are gone",
                host.host_id,
            )
        if host.fire(LinkEvent.UP) is LinkState.LOST:
            self._scheduled(
                self.scheduler.add_host(
                    host.host_id, resources, images=welcome.images, host_max_starts=starts
                ),
                out,
            )
            if host.drained:
                self.scheduler.drain_host(host.host_id)
        else:
            self.scheduler.host_images(host.host_id, welcome.images)
            if not host.drained:
                self._scheduled(self.scheduler.drain_host(host.host_id, False), out)
        host.instance = welcome.instance
        host.down_since = None
        host.generation += 1
        log.info("host %s connected (%s)", host.host_id, event.address)

    def _lose(self, host: Host) -> None:
        host.fire(LinkEvent.GRACE_OVER)
        self.scheduler.remove_host(host.host_id)
        reason = f"host {host.host_id} unreachable for more than {self.grace:g} s"
        for record in self.records.values():
            if record.host != host.host_id:
                continue
            record.holds_resources = False
            if (record.state, _E.LOSE) in TRANSITIONS:
                record.fire(_E.LOSE, reason)
        log.warning("host %s is lost: %s", host.host_id, reason)

    # ------------------------------------------------------------------ what agents report

    def _apply_change(
        self, record: SandboxRecord, change: SandboxChanged, now: float, out: list[Do]
    ) -> None:
        state, expired = record.state, change.cause in ("idle", "lifetime")
        reason = change.reason or change.cause
        end, code = change_end(change, record.end)
        if change.state == "stopped" and state is _S.RUNNING:
            record.fire(_E.EXPIRE if expired else _E.STOP, reason)
            record.fire(_E.STOPPED, reason, end, code)
        elif change.state == "running" and state is _S.STOPPED:
            record.fire(_E.START, reason)
            record.fire(_E.CREATED, reason)
        elif change.state == "deleted" and state in (_S.RUNNING, _S.STOPPED):
            if state is _S.RUNNING and expired:
                record.fire(_E.EXPIRE, reason)
            record.fire(_E.DELETE, reason)
            record.fire(_E.DELETED, reason, end, code)
            self.release(record, now, out)

    def _reconcile(self, host: Host, reply: SandboxListReply, now: float, out: list[Do]) -> None:
        found = {info.sandbox_id: info for info in reply.sandboxes}
        for change in reply.removed:  # removed by the agent while we were away: not failures
            gone = self.records.get(change.sandbox_id)
            if gone is not None and gone.host == host.host_id and gone.sandbox_id not in found:
                self._apply_change(gone, change, now, out)
        for record in list(self.records.values()):
            if record.host != host.host_id or record.state in (_S.PENDING, _S.CREATING):
                continue
            self._reconcile_one(host, record, found.pop(record.sandbox_id, None), now, out)
        for info in found.values():
            if info.sandbox_id not in self.records:  # else: a create in flight, or elsewhere
                self._adopt(host, info, out)

    def _reconcile_one(
        self,
        host: Host,
        record: SandboxRecord,
        info: SandboxInfo | None,
        now: float,
        out: list[Do],
    ) -> None:
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
            self.release(record, now, out)
            return
        record.info = info
        running = info.state in ("running", "paused")  # paused: frozen, resumed on use
        if state is _S.LOST:
            record.fire(_E.FOUND_RUNNING if running else _E.FOUND_STOPPED, "host reconciled")
            self.hold(host.host_id, record)
        elif state is _S.RUNNING and not running:
            cause = info.deadlines.stop_cause if info.deadlines else ""
            if cause:  # its agent stopped it (a deadline, or a request) while we were away
                why = f"stopped while the link was down ({cause})"
                change = SandboxChanged(
                    sandbox_id=record.sandbox_id, state="stopped", cause=cause, reason=why
                )
                self._apply_change(record, change, now, out)
            else:
                why, code = (
                    f"its container is {info.state} (exit code {info.exit_code})",
                    info.exit_code,
                )
                record.fire(_E.FAIL, why, EndReason.INIT_EXITED, code)
        elif state is _S.FAILED and record.retryable:
            pass  # the create's reply was lost: kept for a retry with its id (or a delete)
        elif state is _S.DELETING or (state is _S.FAILED and not _was_created(record)):
            # We meant to delete it, or its create failed on a link that broke: remove it. A
            # sandbox that failed later (a stop or start whose reply was lost) keeps its
            # container and files: its owner decides (delete, or the cluster's exit).
            out.append(RemoveLeftover(record.sandbox_id, host.host_id))

    def _adopt(self, host: Host, info: SandboxInfo, out: list[Do]) -> None:
        spec = info.spec or SandboxSpec(image=info.image)
        record = SandboxRecord(info.sandbox_id, spec, on_step=self.on_step)
        record.host = host.host_id
        record.info = info
        record.fire(_E.PLACE, f"adopted on {host.host_id}")
        running = info.state in ("running", "paused")
        record.fire(_E.CREATED, "found running" if running else "found")
        if not running:
            record.fire(_E.STOP, "found stopped")
            record.fire(
                _E.STOPPED, f"container {info.state}", EndReason.INIT_EXITED, info.exit_code
            )
        record.placed.set()
        record.settled.set()
        self.records[info.sandbox_id] = record
        self.hold(host.host_id, record)
        out.append(Adopt(info.sandbox_id, host.host_id))


def _was_created(record: SandboxRecord) -> bool:
    """Whether the sandbox's create ever succeeded (its container was made for it)."""
    return any(t.event is _E.CREATED for t in record.history)


__all__ = ["ClusterState", "Subscribable"]
