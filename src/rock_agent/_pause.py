"""Pausing sandboxes: the `PauseSandbox` / `ResumeSandbox` handlers, the `pause_after` policy
and the resume on use.

Rules:
- Every request reaches a sandbox through `AgentServer.handle`, which brackets it with
  `Pauser.use`: a request that needs the sandbox's processes (any but those of `QUIET`)
  resumes a paused sandbox before its handler runs, so no kind of use (commands, sessions,
  files, transfers, port forwards, exec, expect, stop, remove, commit...) is missed, and it
  holds off the pause while it runs. `QUIET` requests neither resume a sandbox nor count as
  a use of it: looking at it (inspect, stats), its timeouts (keepalive, set timeouts), and
  pausing or resuming it, which do so themselves.
- The policy is `_pause_policy`'s; this driver performs it. Pauses and resumes of one sandbox
  take its lock, so a request that arrives while the policy pauses the sandbox waits and then
  resumes it. A due pause is checked again under the lock (a use may have begun).
- What is paused is learned from this agent's own calls, from the engine's events (a pause
  by hand or by another agent process, such as the `rock` command line's) and, at start, from
  a listing (a restarted agent adopts a paused container as paused and resumes it on use).
- Clocks (see docs/pause.md): pausing stops no clock of `DeadlineKeeper`. The lifetime runs
  on, and so does the idle timeout (a pause is not a use), so an idle timeout longer than
  `pause_after` still stops a sandbox that stays unused.
- Sandboxes whose policy this agent enforces are those whose deadlines it keeps: created
  here (tracked on their create), or tracked by the deadline keeper when this agent starts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import anyio

from rock_core import BadRequest, RockError, SandboxNotFound
from rock_core.protocol import (
    CreateSandbox,
    InspectSandbox,
    Keepalive,
    PauseSandbox,
    ReadLogs,
    ReadStats,
    Reply,
    Request,
    ResumeSandbox,
    SandboxReply,
    SetTimeouts,
)
from rock_core.serving import Connection

from ._expiry import DeadlineKeeper
from ._pause_policy import PauseTable
from ._runtime import ContainerRuntime, EngineEvent

log = logging.getLogger("rock_agent.pause")

# A container's log is the engine's, read without its processes.
QUIET = (PauseSandbox, ResumeSandbox, InspectSandbox, ReadStats, ReadLogs, Keepalive, SetTimeouts)
MAX_SLEEP = 1.0  # the table is looked at least this often
WATCH_RETRY = 1.0  # seconds before the event stream is read again after it failed


class Pauser:
    """Pauses idle sandboxes, resumes them on use, and pauses or resumes them when asked."""

    def __init__(self, runtime: ContainerRuntime, keeper: DeadlineKeeper) -> None:
        self.runtime = runtime
        self.keeper = keeper
        self.table = PauseTable()
        self._since = time.time()  # engine events are read from here on
        self._locks: dict[str, anyio.Lock] = {}
        self._adopted = False  # the start-up listing came back (`_adopt`)

    def _lock(self, sandbox_id: str) -> anyio.Lock:
        return self._locks.setdefault(sandbox_id, anyio.Lock())

    # ------------------------------------------------------------------ requests

    @contextlib.asynccontextmanager
    async def use(self, request: Request) -> AsyncIterator[None]:
        """Bracket a request: resume its sandbox first if it is paused, and count the use."""
        sandbox_id = getattr(request, "sandbox_id", None)
        if not isinstance(sandbox_id, str) or isinstance(request, QUIET):
            yield
            return
        if not self._adopted and not self.table.is_paused(sandbox_id):
            await self._look(sandbox_id)
        if self.table.is_paused(sandbox_id):
            try:
                await self.set_paused(sandbox_id, False)
            except BadRequest:  # it stopped meanwhile: the handler says what that means
                self.table.set_paused(sandbox_id, False, time.time())
        self.table.use_began(sandbox_id, time.time())
        try:
            yield
        finally:
            self.table.use_ended(sandbox_id, time.time())
        if isinstance(request, CreateSandbox) and request.spec.pause_after is not None:
            self.table.track(sandbox_id, request.spec.pause_after, time.time())

    async def _look(self, sandbox_id: str) -> None:
        # Until the start-up listing is in, what is paused is asked of the engine: a request
        # may come first (`rock exec` starts an agent for one request).
        with contextlib.suppress(RockError):  # a missing one: the handler says so
            if (await self.runtime.inspect(sandbox_id)).state == "paused":
                self.table.set_paused(sandbox_id, True, time.time())

    async def set_paused(self, sandbox_id: str, paused: bool) -> None:
        """Pause (or resume) the sandbox through the runtime, under its lock."""
        async with self._lock(sandbox_id):
            if paused:
                await self._pause(sandbox_id)
            else:
                await self.runtime.resume(sandbox_id)
                self.table.set_paused(sandbox_id, False, time.time())
        log.info("%s sandbox", "paused" if paused else "resumed", extra={"sandbox": sandbox_id})

    async def _pause(self, sandbox_id: str) -> None:
        # Marked paused before the engine is asked: a request that arrives meanwhile waits
        # for the lock and then resumes it, rather than finding it frozen.
        self.table.set_paused(sandbox_id, True, time.time())
        try:
            await self.runtime.pause(sandbox_id)
        except BaseException:
            self.table.set_paused(sandbox_id, False, time.time())
            raise

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Adopt what is paused, follow the engine's events and pause idle sandboxes, until
        cancelled."""
        await self._adopt()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            while True:
                now = time.time()
                for sandbox_id in self.table.due(now):
                    tg.start_soon(self._pause_idle, sandbox_id)
                upcoming = self.table.next_deadline()
                wait = MAX_SLEEP if upcoming is None else min(MAX_SLEEP, upcoming - now)
                await anyio.sleep(max(0.05, wait))

    async def _adopt(self) -> None:
        now = time.time()
        try:
            infos = await self.runtime.list_sandboxes()
        except RockError as exc:
            log.warning("cannot list sandboxes to find the paused ones: %s", exc)
            return
        for info in infos:
            if info.state == "paused":
                self.table.set_paused(info.sandbox_id, True, now)
            after = info.spec.pause_after if info.spec is not None else None
            if after is not None and self.keeper.table.owner(info.sandbox_id) is not None:
                self.table.track(info.sandbox_id, after, now)
        self._adopted = True

    async def _pause_idle(self, sandbox_id: str) -> None:
        try:
            async with self._lock(sandbox_id):
                if not self.table.still_due(sandbox_id, time.time()):
                    self.table.release(sandbox_id)
                    return
                await self._pause(sandbox_id)
            log.info("paused an idle sandbox", extra={"sandbox": sandbox_id})
        except SandboxNotFound:
            self.table.forget(sandbox_id)
        except RockError as exc:
            log.warning("could not pause idle sandbox %s: %s", sandbox_id, exc)
            self.table.failed(sandbox_id, time.time())

    async def _watch(self) -> None:
        while True:
            try:
                async for event in self.runtime.events(self._since):
                    self._since = max(self._since, event.time)
                    self._on_event(event)
            except RockError as exc:
                log.debug("the engine's event stream failed (reading it again): %s", exc)
            await anyio.sleep(WATCH_RETRY)

    def _on_event(self, event: EngineEvent) -> None:
        sandbox_id, at = event.sandbox_id, event.time
        match event.action:
            case "pause":
                self.table.set_paused(sandbox_id, True, at)
            case "unpause":
                self.table.set_paused(sandbox_id, False, at)
            case "start":
                self.table.started(sandbox_id, at)
            case "die":
                self.table.stopped(sandbox_id, at)
            case "destroy":
                self.table.forget(sandbox_id)
                self._locks.pop(sandbox_id, None)


# ---------------------------------------------------------------------------- handlers


class _Server(Protocol):
    pauser: Pauser
    runtime: ContainerRuntime
    keeper: DeadlineKeeper

    @property
    def sessions(self) -> Mapping[tuple[str, str], object]: ...


async def pause(server: _Server, conn: Connection, req: PauseSandbox) -> Reply:
    """Handler of `PauseSandbox`: the sandbox as it is afterwards."""
    await server.pauser.set_paused(req.sandbox_id, True)
    return await _reply(server, req.id, req.sandbox_id)


async def resume(server: _Server, conn: Connection, req: ResumeSandbox) -> Reply:
    """Handler of `ResumeSandbox`: the sandbox as it is afterwards."""
    await server.pauser.set_paused(req.sandbox_id, False)
    return await _reply(server, req.id, req.sandbox_id)


async def _reply(server: _Server, request_id: int, sandbox_id: str) -> SandboxReply:
    info = await server.runtime.inspect(sandbox_id)
    info.deadlines = await server.keeper.view(info)
    info.sessions = sorted(name for sid, name in server.sessions if sid == sandbox_id)
    return SandboxReply(id=request_id, sandbox=info)


__all__ = ["QUIET", "Pauser", "pause", "resume"]
