"""`open_agent`: an agent over one runtime, with the background work it owns.

Rules:
- The agent serves at once, engine or not: a client of an agent whose engine does not answer
  is refused in the handshake with `EngineUnavailable` naming the cause and the fix.
- The background work (adopting and reaping containers at start and every `reap_interval`,
  ending leases, enforcing deadlines) starts once the engine answers; until then the agent
  looks for it every `ENGINE_POLL` seconds and, unless `quiet`, says once in its log that it
  waits (a stdio agent's client hears it in the handshake).
- The background work belongs to the `async with`: leaving it first lets a start-up reap
  that has begun finish (a short-lived client such as `rock ps` must not cut it short), then
  stops the work and kills every session. Containers stay; their owners decide.
- Serving a byte stream is `server.serve(stream, peer)`, from any task.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio

from rock_core import RockError

from ._admit import Limits
from ._engine_timing import observing_engine
from ._runtime import ContainerRuntime
from ._server import AgentServer

log = logging.getLogger("rock_agent")

ENGINE_POLL = 5.0  # seconds between looks for an engine that did not answer
FIRST_REAP_WAIT = 60.0  # seconds leaving waits for a start-up reap that has begun


@contextlib.asynccontextmanager
async def open_agent(
    runtime: ContainerRuntime,
    *,
    reap_interval: float = 30.0,
    lease: float = 60.0,
    reap_on_disconnect: bool = True,
    quiet: bool = False,
    limits: Limits | None = None,
) -> AsyncIterator[AgentServer]:
    """An `AgentServer` over `runtime`, its background work running while the block runs.

    `lease` is the default lease of an owner (seconds); `reap_on_disconnect` removes an
    owner's sandboxes when its link closes (one local program, the stdio mode) instead of
    keeping them for the rest of its lease (a shared socket agent); `quiet` keeps a wait for
    the engine out of the log; `limits` what the agent admits for its host (`_admit`).
    """
    server = AgentServer(
        runtime,
        reap_interval=reap_interval,
        lease=lease,
        reap_on_disconnect=reap_on_disconnect,
        limits=limits,
    )
    working = anyio.Event()  # set once the background work runs
    async with anyio.create_task_group() as tg, observing_engine(server.metrics.engine_call):
        tg.start_soon(_work_once_engine_answers, server, quiet, working)
        tg.start_soon(server.metrics.sample_loop_lag)
        try:
            yield server
        finally:
            if working.is_set() or server.engine_answered:
                # A short-lived client (`rock ps`) may be done before the loops even began:
                # the start-up reap still runs, once, before the agent goes.
                with anyio.move_on_after(FIRST_REAP_WAIT, shield=True):
                    await working.wait()
                    await server.first_reap_done.wait()
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await server.aclose()


async def _work_once_engine_answers(server: AgentServer, quiet: bool, working: anyio.Event) -> None:
    """Run the background loops once the engine answers (without one they have nothing to
    do, and would only report the same failure again and again)."""
    waiting = False
    while True:
        try:
            await server.runtime.engine_resources()
            break
        except RockError as exc:
            if not waiting and not quiet:
                log.warning("%s (clients are refused until it answers)", exc)
            waiting = True
        await anyio.sleep(ENGINE_POLL)
    if waiting:
        log.info("the container engine answers now")
    working.set()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_reap_loop, server)
        tg.start_soon(_lease_loop, server)
        tg.start_soon(_deadline_loop, server)
        tg.start_soon(_pause_loop, server)


async def _reap_loop(server: AgentServer) -> None:
    """Reap orphans at start, then periodically (owners that died without disconnecting)."""
    first = True
    while True:
        try:
            adopted, reaped = await server.reap_orphans()
            if first:  # the adopted sandboxes' DNS filters were the previous agent's
                await server.runtime.restore_network()
            if first or reaped:
                log.info(
                    "checked for orphaned sandboxes",
                    extra={"host": server.host_id, "adopted": adopted, "reaped": reaped},
                )
        except RockError as exc:
            log.warning("could not check for orphaned sandboxes: %s", exc)
        first = False
        server.first_reap_done.set()
        await anyio.sleep(server.reap_interval)


async def _lease_loop(server: AgentServer) -> None:
    """Check for ended leases often enough to act within a few seconds of the deadline."""
    interval = max(0.2, min(2.0, server.leases.default / 10))
    await server.first_reap_done.wait()
    while True:
        server.close_silent_connections()
        await server.reap_expired()
        await anyio.sleep(interval)


async def _deadline_loop(server: AgentServer) -> None:
    """Enforce idle timeouts, lifetimes and auto-delete (after the start-up adoption)."""
    await server.first_reap_done.wait()
    await server.keeper.run()


async def _pause_loop(server: AgentServer) -> None:
    """Pause idle sandboxes and follow pauses (after the start-up adoption)."""
    await server.first_reap_done.wait()
    await server.pauser.run()


__all__ = ["ENGINE_POLL", "open_agent"]
