"""The live view's requests (`rock top`): a host's whole view, and the cores' reports.

Rules:
- `ReadHostView` is one round trip for everything this host knows: its resources, the
  reservations of its running sandboxes (their specs' cpus and memory), the creates it is
  carrying out (`starting`, counted around the create handler: `counting_starts`), every
  sandbox the connection may see (the ownership rules of `Principal.may_act_on`) with its
  deadlines and its latest live reading, and the latest report of each core it may see.
- Live readings are taken at once for every running sandbox (at most `STATS_AT_ONCE` in
  flight, all within `STATS_WAIT`); a sandbox whose reading fails or comes late shows its
  previous one, if any. Readings of sandboxes that are gone are forgotten.
- A `CoreReport` is kept per connection, replaced by the next one, and dropped when its
  connection ends (`TopState.forget`). Nothing here changes what the agent decides.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from rock_core import RockError
from rock_core.protocol import (
    CoreReport,
    CoreView,
    Done,
    HostView,
    HostViewReply,
    ReadHostView,
    Reply,
    SandboxInfo,
    SandboxStats,
    SandboxView,
)
from rock_core.serving import Connection

from ._expiry import DeadlineKeeper
from ._runtime import ContainerRuntime, Resources
from ._stats import sandbox_stats

STATS_AT_ONCE = 32  # live readings in flight at once for one view
STATS_WAIT = 5.0  # seconds a view waits for its readings


class TopState:
    """What the live view needs beyond the engine: starts in flight, cores' reports, the
    latest readings and the engine's resources (read once)."""

    def __init__(self) -> None:
        self.starting = 0
        self.reports: dict[Connection, tuple[int, CoreView]] = {}  # with the sender's uid
        self.readings: dict[str, SandboxStats] = {}
        self.resources: Resources | None = None

    def forget(self, conn: Connection) -> None:
        """The connection ended: its core's report goes with it."""
        self.reports.pop(conn, None)


class _Server(Protocol):
    host_id: str
    runtime: ContainerRuntime
    keeper: DeadlineKeeper
    top: TopState


Handler = Callable[[Any, Connection, Any], Awaitable[Reply]]


def counting_starts(handler: Handler) -> Handler:
    """`handler` (the create handler) counted in `TopState.starting` while it runs."""

    @functools.wraps(handler)
    async def counted(server: _Server, conn: Connection, request: Any) -> Reply:
        server.top.starting += 1
        try:
            return await handler(server, conn, request)
        finally:
            server.top.starting -= 1

    return counted


async def core_report(server: _Server, conn: Connection, req: CoreReport) -> Reply:
    """Handler of `CoreReport`: keep it as this connection's latest."""
    view = CoreView(
        owner=conn.owner, at=time.time(), queued=req.queued, starting=req.starting, pools=req.pools
    )
    server.top.reports[conn] = (conn.principal.uid, view)
    return Done(id=req.id)


async def read_host_view(server: _Server, conn: Connection, req: ReadHostView) -> Reply:
    """Handler of `ReadHostView`."""
    top = server.top
    if top.resources is None:
        top.resources = await server.runtime.engine_resources()
    infos = await server.runtime.list_sandboxes()
    running = [info for info in infos if info.state == "running"]
    # A paused sandbox keeps its reservation (the scheduler's ledger counts it as running).
    holding = [info for info in infos if info.state in ("running", "paused")]
    live = {info.sandbox_id for info in running}
    top.readings = {sid: r for sid, r in top.readings.items() if sid in live}
    who = conn.principal
    shown = [info for info in infos if who.may_act_on(info.owner_uid, info.owner)]
    shown_ids = {info.sandbox_id for info in shown}
    async with anyio.create_task_group() as tg:
        for info in shown:
            tg.start_soon(_deadlines, server, info)
        if req.stats:
            tg.start_soon(_read_all, server, [i for i in running if i.sandbox_id in shown_ids])
    view = HostView(
        host_id=server.host_id,
        time=time.time(),
        cpus=top.resources.cpus,
        memory=top.resources.memory,
        cpus_reserved=round(sum(i.spec.cpus for i in holding if i.spec), 3),
        memory_reserved=sum(i.spec.memory for i in holding if i.spec),
        starting=top.starting,
        sandboxes=[
            SandboxView(
                info=info,
                stats=top.readings.get(info.sandbox_id) if info.sandbox_id in live else None,
            )
            for info in shown
        ],
        cores=[view for uid, view in top.reports.values() if who.may_act_on(uid, view.owner)],
    )
    return HostViewReply(id=req.id, view=view)


async def _deadlines(server: _Server, info: SandboxInfo) -> None:
    try:
        info.deadlines = await server.keeper.view(info)
    except RockError:
        info.deadlines = None  # it went meanwhile: shown without them


async def _read_all(server: _Server, infos: list[SandboxInfo]) -> None:
    limiter = anyio.CapacityLimiter(STATS_AT_ONCE)
    readings = server.top.readings

    async def read(sandbox_id: str) -> None:
        async with limiter:
            try:
                reading = await server.runtime.stats(sandbox_id)
            except RockError:
                return  # stopped or gone meanwhile: its previous reading stands
        readings[sandbox_id] = sandbox_stats(sandbox_id, reading, time.time())

    with anyio.move_on_after(STATS_WAIT):
        async with anyio.create_task_group() as tg:
            for info in infos:
                tg.start_soon(read, info.sandbox_id)


__all__ = ["TopState", "core_report", "counting_starts", "read_host_view"]
