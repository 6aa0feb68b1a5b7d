"""The sandbox lifecycle requests: create, stop, start, remove, inspect, list, timeouts.

Rules:
- The endpoint has already checked that the connection may act on the sandbox named
  (`AgentServer.handle`); create checks itself, in the runtime: an id another owner holds is
  `AlreadyExists`.
- A remove of a sandbox whose create is on its way here waits for that create to end, before
  the sandbox is looked for (`_routes.authorize`) and again in its handler: a
  cancelled create removes what the engine made for it before it ends (`_engine.made_anyway`),
  so the remove's answer (a core's quiet remove after it cancels a create) comes when nothing
  of the sandbox is left.
- Deadlines: every change is noted with its cause first, so the engine's event that follows
  is reported with it (`DeadlineKeeper.note`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol

import anyio

from rock_core import BadRequest
from rock_core.protocol import (
    CreateSandbox,
    DeadlinesReply,
    Done,
    InspectSandbox,
    Keepalive,
    ListSandboxes,
    Ping,
    Pong,
    RemoveSandbox,
    Reply,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    SetTimeouts,
    StartSandbox,
    StopSandbox,
)
from rock_core.serving import Connection

from . import _images
from ._admit import HostAdmission
from ._expiry import DeadlineKeeper
from ._labels import owner_key
from ._runtime import ContainerRuntime
from ._shell import ShellSession


class _Server(Protocol):
    runtime: ContainerRuntime
    keeper: DeadlineKeeper
    sessions: dict[tuple[str, str], ShellSession]
    created_here: set[str]
    creating: dict[str, set[anyio.Event]]  # sandbox id: an event per create on its way
    # Ids this agent found from their labels at start (their sessions are gone).
    adopted_ids: set[str]
    image_usage: _images.ImageUsage
    admission: HostAdmission  # the host's start cap and capacity, for every owner

    async def drop_sessions(self, sandbox_id: str) -> None: ...


async def ping(server: _Server, conn: Connection, req: Ping) -> Reply:
    """Handler of `Ping`."""
    return Pong(id=req.id, time=time.time())


async def create(server: _Server, conn: Connection, req: CreateSandbox) -> Reply:
    """Handler of `CreateSandbox`: create and start a container for the connection's owner."""
    who = conn.principal
    if who.admin:
        raise BadRequest("an administrator's connection owns no sandboxes: it cannot create")
    fresh = req.sandbox_id not in server.created_here
    server.created_here.add(req.sandbox_id)
    try:
        async with server.admission.admit(server.runtime, req.sandbox_id, req.spec):
            info = await server.runtime.create(req.sandbox_id, req.spec, who.owner, who.uid)
    except BaseException:
        if fresh:  # nothing of this id was made here
            server.created_here.discard(req.sandbox_id)
        raise
    server.adopted_ids.discard(req.sandbox_id)  # made now: its sessions are this agent's
    server.keeper.created(info, req.spec, who.key)
    await _images.note_use(server, req.spec.image)
    return SandboxReply(id=req.id, sandbox=with_sessions(server, info))


@contextlib.contextmanager
def on_its_way(creating: dict[str, set[anyio.Event]], request: object) -> Iterator[None]:
    """Around the whole handling of a request: a `CreateSandbox` is on its way, from the moment
    the agent takes it up (before any wait) until its handling ends (module rules)."""
    if not isinstance(request, CreateSandbox):
        yield
        return
    ended = anyio.Event()
    pending = creating.setdefault(request.sandbox_id, set())
    pending.add(ended)
    try:
        yield
    finally:
        pending.discard(ended)
        if not pending and creating.get(request.sandbox_id) is pending:
            del creating[request.sandbox_id]
        ended.set()


async def creates_ended(creating: dict[str, set[anyio.Event]], sandbox_id: str) -> None:
    """Return once no create of `sandbox_id` is on its way here (module rules)."""
    while pending := creating.get(sandbox_id):
        await next(iter(pending)).wait()


async def stop(server: _Server, conn: Connection, req: StopSandbox) -> Reply:
    """Handler of `StopSandbox`: stop the container (its files stay)."""
    keeper = server.keeper
    keeper.note(req.sandbox_id, "request", f"stopped at the request of {conn.owner}", "die")
    await server.drop_sessions(req.sandbox_id)
    await server.runtime.stop(req.sandbox_id, req.timeout)
    keeper.stopped_now(req.sandbox_id, "request")
    return SandboxReply(id=req.id, sandbox=await inspected(server, req.sandbox_id))


async def start(server: _Server, conn: Connection, req: StartSandbox) -> Reply:
    """Handler of `StartSandbox`: start a stopped container again."""
    keeper = server.keeper
    keeper.note(req.sandbox_id, "request", f"started at the request of {conn.owner}", "start")
    await server.runtime.start(req.sandbox_id)
    keeper.started_now(req.sandbox_id)
    return SandboxReply(id=req.id, sandbox=await inspected(server, req.sandbox_id))


async def remove(server: _Server, conn: Connection, req: RemoveSandbox) -> Reply:
    """Handler of `RemoveSandbox`: remove the container and its sessions."""
    await creates_ended(server.creating, req.sandbox_id)  # (`authorize` waited already)
    why = f"removed at the request of {conn.owner}"
    server.keeper.note(req.sandbox_id, "request", why, "destroy")
    await server.drop_sessions(req.sandbox_id)
    await server.runtime.remove(req.sandbox_id)
    server.admission.released(req.sandbox_id)
    # Gone: a sandbox created later under this id is new, neither adopted nor created before.
    server.created_here.discard(req.sandbox_id)
    server.adopted_ids.discard(req.sandbox_id)
    return Done(id=req.id)


async def inspect(server: _Server, conn: Connection, req: InspectSandbox) -> Reply:
    """Handler of `InspectSandbox`."""
    return SandboxReply(
        id=req.id, sandbox=with_sessions(server, await inspected(server, req.sandbox_id))
    )


async def inspected(server: _Server, sandbox_id: str) -> SandboxInfo:
    """The engine's view of a sandbox with its deadlines."""
    info = await server.runtime.inspect(sandbox_id)
    info.deadlines = await server.keeper.view(info)
    return info


async def list_sandboxes(server: _Server, conn: Connection, req: ListSandboxes) -> Reply:
    """Handler of `ListSandboxes`: the sandboxes the connection may see."""
    who = conn.principal
    owner = req.owner if who.admin else who.owner
    key = owner_key(who.uid, owner) if owner and (not who.admin or who.uid != 0) else ""
    removed = []
    if key:
        with anyio.move_on_after(30):
            await server.keeper.track_owner(key)  # deadlines of its sandboxes known
        removed = server.keeper.removed_for(key)
    infos = await server.runtime.list_sandboxes(owner=key)
    infos = [
        info
        for info in infos
        if who.may_act_on(info.owner_uid, info.owner) and (not owner or info.owner == owner)
    ]
    for info in infos:
        info.deadlines = server.keeper.table.view(info.sandbox_id)
    return SandboxListReply(
        id=req.id, sandboxes=[with_sessions(server, i) for i in infos], removed=removed
    )


async def set_timeouts(server: _Server, conn: Connection, req: SetTimeouts) -> Reply:
    """Handler of `SetTimeouts`."""
    deadlines = await server.keeper.set_timeouts(req, conn.principal.key)
    return DeadlinesReply(id=req.id, deadlines=deadlines)


async def keepalive(server: _Server, conn: Connection, req: Keepalive) -> Reply:
    """Handler of `Keepalive`."""
    deadlines = await server.keeper.keepalive(req.sandbox_id, conn.principal.key)
    return DeadlinesReply(id=req.id, deadlines=deadlines)


def with_sessions(server: _Server, info: SandboxInfo) -> SandboxInfo:
    """`info` with the names of its open sessions."""
    info.sessions = sorted(name for sid, name in server.sessions if sid == info.sandbox_id)
    return info
