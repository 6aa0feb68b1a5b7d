"""The agent's deadline keeper: idle timeouts, lifetimes and auto-delete on real containers.

Rules:
- An agent enforces the deadlines of the sandboxes of the owners it serves: those it creates,
  those of an owner that connects (found by label), and in socket mode those it adopts with a
  lease. Two agents enforcing one sandbox is harmless: stopping a stopped container and
  removing a removed one are no-ops.
- The engine's event stream (starts, stops and removals of this host's containers) is the one
  source of what changed: it moves the table (any stop starts the auto-delete clock, any start
  restarts the lifetime), and each change goes as `SandboxChanged` to the owner's connections,
  with its cause when this agent made it (an expiry or a request), else "engine" (`_changes`
  decides both). The stream is read from the keeper's start, so nothing that happened
  meanwhile is missed.
- Due actions run at most `MAX_ACTIONS` at a time: expiry stops the container (files kept) or
  removes it, per policy; auto-delete removes it. Its sessions are closed first. An action the
  engine refuses is tried again (`DeadlineTable.failed`).
- What labels cannot hold goes to the host's deadline record (`_deadline_store`): timeouts
  changed while the sandbox exists (written before `SetTimeouts` is answered), its last use
  and the cause of its latest stop (written at most once a second). A restarted agent restores
  from it; another agent process (`rock status`) reads it to show deadlines it does not keep.
- Owners here are owner keys (`_labels.owner_key`: the owner scoped by its user's uid).
- Removals are remembered (`_changes.Removals`) and reported in `ListSandboxes`, so a core
  whose link was down when its sandbox went learns why.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio

from rock_core import BadRequest, RockError, SandboxNotFound
from rock_core.protocol import (
    InspectSandbox,
    ReadLogs,
    ReadStats,
    Request,
    SandboxChanged,
    SandboxDeadlines,
    SandboxInfo,
    SandboxSpec,
    SetTimeouts,
)

from ._changes import Causes, Removals, change_of
from ._deadline_store import DeadlineStore, StoredDeadlines
from ._deadlines import DeadlineTable, Due, Timeouts, project
from ._end_reasons import with_end
from ._labels import owner_key
from ._runtime import ContainerRuntime, EngineEvent

log = logging.getLogger("rock_agent.deadlines")

MAX_ACTIONS = 8  # stops and removals in flight at once
MAX_SLEEP = 1.0  # the table is looked at least this often (deadlines may move earlier)
PERSIST_INTERVAL = 1.0
STOP_TIMEOUT = 10.0  # seconds an expired sandbox's processes get to end
WATCH_RETRY = 1.0  # seconds before the event stream is read again after it failed; doubles
WATCH_RETRY_MAX = 30.0
LOOKS = (InspectSandbox, ReadStats, ReadLogs)  # by another owner, these never count as a use

Notify = Callable[[str, SandboxChanged], Awaitable[None]]


class _Meta:
    """What the keeper knows of a tracked sandbox beyond the table."""

    __slots__ = ("container_id", "stored")

    def __init__(self, container_id: str, stored: bool) -> None:
        self.container_id = container_id
        self.stored = stored  # the host's record has an entry for it


class DeadlineKeeper:
    """Tracks deadlines, acts on them, and tells owners what changed."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        notify: Notify,
        drop_sessions: Callable[[str], Awaitable[None]],
        store: DeadlineStore | None = None,
    ) -> None:
        self.runtime = runtime
        self.table = DeadlineTable()
        self.store = store or DeadlineStore()
        self._notify = notify
        self._drop_sessions = drop_sessions
        self._since = time.time()  # engine events are read from here on
        self._meta: dict[str, _Meta] = {}
        self._owners: dict[str, anyio.Event] = {}  # owners whose sandboxes are tracked
        self._causes = Causes()
        self._removed = Removals()
        self._dirty: set[str] = set()  # sandbox ids whose entry in the record is out of date
        self._forgotten: set[str] = set()  # container ids whose entry is to go

    # ------------------------------------------------------------------ tracking

    def created(self, info: SandboxInfo, spec: SandboxSpec, owner: str) -> None:
        """A sandbox this agent created (or found again by a retried create) runs now."""
        if info.sandbox_id in self.table:
            return
        timeouts = Timeouts.from_spec(spec)
        self.table.track(
            info.sandbox_id, owner, timeouts, now=time.time(), running=True, started_at=time.time()
        )
        self._meta[info.sandbox_id] = _Meta(info.container_id, stored=False)
        self._mark(info.sandbox_id)

    async def track_owner(self, owner: str) -> None:
        """Enforce the deadlines of every sandbox of `owner` on this host (once per owner)."""
        ready = self._owners.get(owner)
        if ready is not None:
            await ready.wait()
            return
        ready = self._owners[owner] = anyio.Event()
        try:
            infos = await self.runtime.list_sandboxes(owner=owner)
            if infos:
                stored = await anyio.to_thread.run_sync(self.store.load)
                for info in infos:
                    if info.sandbox_id not in self.table:
                        await self._restore(info, stored.get(info.container_id))
        except RockError as exc:
            log.warning("cannot restore the deadlines of %s's sandboxes: %s", owner, exc)
            del self._owners[owner]
        finally:
            ready.set()

    def forget_owner(self, owner: str) -> None:
        """The owner is gone from this agent (its lease ended)."""
        self._owners.pop(owner, None)
        self._removed.forget_owner(owner)

    async def _restore(self, info: SandboxInfo, stored: StoredDeadlines | None) -> None:
        try:
            spec_timeouts = Timeouts.from_spec(info.spec) if info.spec else Timeouts()
        except RockError as exc:
            log.warning("sandbox %s has unusable timeouts in its labels: %s", info.sandbox_id, exc)
            spec_timeouts = Timeouts()
        timeouts = stored.timeouts() if stored is not None else spec_timeouts
        running = info.state in ("running", "paused")
        started_at = stopped_at = info.created_at
        if timeouts.limited:
            try:
                detail = await self.runtime.container(info.sandbox_id)
            except SandboxNotFound:
                return  # removed since it was listed
            started_at = max(detail.started_at, info.created_at)
            stopped_at = max(detail.finished_at, info.created_at)
            running = detail.running
        self.table.track(
            info.sandbox_id,
            owner_key(info.owner_uid, info.owner),
            timeouts,
            now=time.time(),
            running=running,
            started_at=started_at,
            stopped_at=stopped_at,
            stop_cause=stored.stop_cause if stored is not None else "",
        )
        self._meta[info.sandbox_id] = _Meta(info.container_id, stored is not None)

    def forget(self, sandbox_id: str) -> None:
        """The sandbox was removed."""
        self.table.forget(sandbox_id)
        self._causes.drop(sandbox_id)
        meta = self._meta.pop(sandbox_id, None)
        if meta is not None and meta.stored:
            self._forgotten.add(meta.container_id)

    # ------------------------------------------------------------------ requests

    @contextlib.contextmanager
    def use(self, request: Request, owner: str) -> Iterator[None]:
        """Bracket a request: one naming a tracked sandbox is a use of it (see `LOOKS`)."""
        sandbox_id = getattr(request, "sandbox_id", None)
        tracked = self.table.owner(sandbox_id) if isinstance(sandbox_id, str) else None
        if tracked is None or (isinstance(request, LOOKS) and tracked != owner):
            yield
            return
        assert isinstance(sandbox_id, str)
        if isinstance(request, LOOKS):  # a look takes no time worth counting as in use
            self.table.touch(sandbox_id, time.time())
            self._mark(sandbox_id)
            yield
            return
        self.table.use_began(sandbox_id, time.time())
        self._mark(sandbox_id)
        try:
            yield
        finally:
            self.table.use_ended(sandbox_id, time.time())
            self._mark(sandbox_id)

    def note(self, sandbox_id: str, cause: str, reason: str, event: str) -> None:
        """This agent is about to change a sandbox: the engine's `event` will carry `cause`."""
        self._causes.note(sandbox_id, cause, reason, event, time.monotonic())

    def stopped_now(self, sandbox_id: str, cause: str) -> None:
        """A stop this agent made has completed (the engine's event may come later)."""
        self.table.stopped(sandbox_id, time.time(), cause)
        self._mark(sandbox_id)

    def started_now(self, sandbox_id: str) -> None:
        """A start this agent made has completed."""
        self.table.started(sandbox_id, time.time())

    async def _tracked(self, sandbox_id: str, owner: str, what: str) -> None:
        """Make sure this agent keeps the sandbox's deadlines; only its owner may ask for that."""
        if sandbox_id in self.table:
            return
        info = await self.runtime.inspect(sandbox_id)  # SandboxNotFound for unknown ids
        if owner_key(info.owner_uid, info.owner) != owner:
            raise BadRequest(
                f"sandbox {sandbox_id} belongs to another program, whose agent keeps its "
                f"deadlines: only its owner can {what}"
            )
        await self.track_owner(owner)
        if sandbox_id not in self.table:  # its owner was tracked before it existed
            stored = (await anyio.to_thread.run_sync(self.store.load)).get(info.container_id)
            await self._restore(info, stored)

    async def keepalive(self, sandbox_id: str, owner: str) -> SandboxDeadlines:
        """A use with nothing to do: the idle timeout runs again from now."""
        await self._tracked(sandbox_id, owner, "keep it alive")
        self.table.touch(sandbox_id, time.time())
        self._mark(sandbox_id)
        view = self.table.view(sandbox_id)
        assert view is not None
        return view

    async def set_timeouts(self, request: SetTimeouts, owner: str) -> SandboxDeadlines:
        """Change a sandbox's limits; they are on record before this returns."""
        sandbox_id = request.sandbox_id
        await self._tracked(sandbox_id, owner, "change its timeouts")
        self.table.change(
            sandbox_id,
            idle=request.idle_timeout,
            lifetime=request.lifetime,
            on_expire=request.on_expire,
            auto_delete=request.auto_delete_after,
        )
        self._mark(sandbox_id, force=True)
        await self.persist()
        view = self.table.view(sandbox_id)
        assert view is not None
        return view

    async def view(self, info: SandboxInfo) -> SandboxDeadlines | None:
        """A sandbox's deadlines: this agent's own, or what the host's record says of them."""
        own = self.table.view(info.sandbox_id)
        if own is not None:
            return own
        stored = (await anyio.to_thread.run_sync(self.store.load)).get(info.container_id)
        if stored is not None:
            timeouts = stored.timeouts()
        elif info.spec is not None:
            try:
                timeouts = Timeouts.from_spec(info.spec)
            except RockError:
                return None
        else:
            return None  # made by an agent without timeouts
        detail = await self.runtime.container(info.sandbox_id)
        return project(
            timeouts,
            running=detail.running,
            started_at=max(detail.started_at, info.created_at),
            stopped_at=max(detail.finished_at, info.created_at),
            last_used=stored.last_used if stored else None,
            in_use=stored.in_use if stored else False,
            stop_cause=stored.stop_cause if stored else "",
        )

    def removed_for(self, owner: str) -> list[SandboxChanged]:
        """The owner's sandboxes removed lately, oldest first."""
        return self._removed.of(owner)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Act on deadlines, follow the engine's events and keep the record, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            tg.start_soon(self._persist_loop)
            limiter = anyio.CapacityLimiter(MAX_ACTIONS)
            while True:
                now = time.time()
                for due in self.table.due(now):
                    tg.start_soon(self._act, due, limiter)
                upcoming = self.table.next_deadline()
                wait = MAX_SLEEP if upcoming is None else min(MAX_SLEEP, upcoming - now)
                await anyio.sleep(max(0.05, wait))

    async def _act(self, due: Due, limiter: anyio.CapacityLimiter) -> None:
        sandbox_id = due.sandbox_id
        async with limiter:
            event = "destroy" if due.action == "delete" else "die"
            self.note(sandbox_id, due.cause, due.reason, event)
            log.info(
                "deadline reached",
                extra={"sandbox": sandbox_id, "action": due.action, "reason": due.reason},
            )
            try:
                await self._drop_sessions(sandbox_id)
                if due.action == "delete":
                    await self.runtime.remove(sandbox_id)
                else:
                    await self.runtime.stop(sandbox_id, STOP_TIMEOUT)
                    self.stopped_now(sandbox_id, due.cause)
            except SandboxNotFound:
                self.forget(sandbox_id)
            except RockError as exc:
                log.warning("could not %s sandbox %s: %s", due.action, sandbox_id, exc)
                self._causes.drop(sandbox_id)
                self.table.failed(sandbox_id, time.time())

    async def _watch(self) -> None:
        """Follow the engine's events from the keeper's start; reconnect if the stream ends."""
        pause = WATCH_RETRY
        while True:
            try:
                async for event in self.runtime.events(self._since):
                    pause = WATCH_RETRY  # the stream works again
                    self._since = max(self._since, event.time)
                    await self._on_event(event)
            except RockError as exc:
                # Warn once per outage, not once a second while the engine is away.
                level = logging.WARNING if pause == WATCH_RETRY else logging.DEBUG
                log.log(level, "the engine's event stream failed (reading it again): %s", exc)
            await anyio.sleep(pause)
            pause = min(pause * 2, WATCH_RETRY_MAX)

    async def _on_event(self, event: EngineEvent) -> None:
        sandbox_id, action, at = event.sandbox_id, event.action, event.time
        if action in ("pause", "unpause"):
            return  # the pause keeper's (`_pause`): no clock here moves
        owner = self.table.owner(sandbox_id)
        meta = self._meta.get(sandbox_id)
        labelled = owner_key(event.owner_uid, event.owner)
        if owner is None or meta is None or owner != labelled:
            return
        if event.container_id != meta.container_id:
            return  # an earlier container of the same sandbox id (replayed)
        cause, reason = self._causes.take(sandbox_id, action, time.monotonic())
        if action == "start":
            self.table.started(sandbox_id, at)
            self._mark(sandbox_id)
        elif action == "die":
            self.table.stopped(sandbox_id, at, "" if cause == "engine" else cause)
            await self._drop_sessions(sandbox_id)  # their shells died with the container
            self._mark(sandbox_id)
        else:  # destroy
            self.forget(sandbox_id)
        change = await with_end(self.runtime, change_of(event, cause, reason), event, cause)
        if action == "destroy":
            self._removed.add(owner, change)
        await self._notify(owner, change)

    # ------------------------------------------------------------------ the record

    def _mark(self, sandbox_id: str, *, force: bool = False) -> None:
        meta = self._meta.get(sandbox_id)
        timeouts = self.table.timeouts(sandbox_id)
        if meta is None or timeouts is None:
            return
        if force or meta.stored or timeouts.limited:
            self._dirty.add(sandbox_id)

    async def persist(self) -> None:
        """Write what changed since the last write to the host's record."""
        dirty, self._dirty = self._dirty, set()
        forget, self._forgotten = self._forgotten, set()
        entries: dict[str, StoredDeadlines] = {}
        for sandbox_id in dirty:
            meta = self._meta.get(sandbox_id)
            view = self.table.view(sandbox_id)
            if meta is None or view is None:
                continue
            entries[meta.container_id] = StoredDeadlines.of(sandbox_id, view)
            meta.stored = True
        if not entries and not forget:
            return
        try:
            await anyio.to_thread.run_sync(self.store.update, entries, forget)
        except OSError as exc:
            log.warning("cannot write the deadline record %s: %s", self.store.path, exc)
            self._dirty |= dirty
            self._forgotten |= forget

    async def _persist_loop(self) -> None:
        while True:
            await anyio.sleep(PERSIST_INTERVAL)
            await self.persist()


__all__ = ["DeadlineKeeper"]
