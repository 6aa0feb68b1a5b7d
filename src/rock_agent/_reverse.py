"""Host ports reached from inside a sandbox, agent side: a listener there, whose connections
the caller claims one by one over its own link (see `rock_core._reverse` for the caller).

Rules:
- A `ListenPort` binds a listener inside the sandbox (`ContainerRuntime.listen`), sends
  `Listening` with its port, then `Accepted` with a number for each connection made to it.
  The connection waits, unread, for the caller's `ClaimConnection` naming that number, which
  carries it both ways exactly as a `ForwardPort` is carried (`_ports.carry`).
- Only the link that listened may claim, by its listen request's id. A connection not claimed
  within `CLAIM_TIMEOUT`, or beyond `MAX_WAITING` waiting at once, is reset.
- A claim with ``reject`` resets the connection (the caller's own port refused it), so the
  program inside sees a failure, not an empty answer.
- A listen ends when the caller cancels it or its link closes: the listener and the
  connections still waiting are closed (claimed ones end with their own requests). It ends
  with `SandboxFailed` when the sandbox stops or goes (`HostPorts.sandbox_gone`, called where
  the agent drops a sandbox's sessions).
- A listen on a given port of a sandbox takes it over from an older listen of the same owner
  on that port (a link that broke before the agent saw it close): the older one ends with
  `AlreadyExists`, so a caller that reconnects gets its port back.
"""

from __future__ import annotations

from typing import Protocol

import anyio
from anyio.abc import ByteStream, TaskGroup

from rock_core import AlreadyExists, NotFound, RockError, SandboxFailed
from rock_core.protocol import (
    Accepted,
    ClaimConnection,
    ForwardReply,
    Listening,
    ListenPort,
    Reply,
)
from rock_core.serving import Connection

from ._listeners import reset
from ._ports import carry
from ._runtime import ContainerRuntime, PortListener

CLAIM_TIMEOUT = 30.0  # seconds an accepted connection waits for the caller's claim
MAX_WAITING = 256  # connections of one listen waiting for their claims at once
TAKE_OVER_TIMEOUT = 10.0  # seconds a listen waits for the older one it takes over to close


class _Listen:
    """One listen's state: what identifies its port, and the connections waiting for claims."""

    def __init__(self, owner: str, sandbox_id: str, address: str, port: int) -> None:
        self.owner = owner
        self.sandbox_id = sandbox_id
        self.address = address
        self.port = port
        self.waiting: dict[int, ByteStream] = {}
        self.timers: dict[int, anyio.CancelScope] = {}  # of the waiting ones (see `_expire`)
        self.accepted = 0
        self.reason: RockError | None = None
        self.ended = anyio.Event()  # asked to end, with `reason`
        self.closed = anyio.Event()  # its listener and waiting connections are closed

    def end(self, reason: RockError) -> None:
        if self.reason is None:
            self.reason = reason
        self.ended.set()

    def where(self) -> str:
        return f"port {self.port} in sandbox {self.sandbox_id}"


class HostPorts:
    """The agent's listens, by (link, listen request id) for claims, and by sandbox."""

    def __init__(self) -> None:
        self._listens: dict[tuple[Connection, int], _Listen] = {}

    def statistics(self) -> tuple[int, int]:
        """(listens open, connections waiting for claims): both 0 when nothing is exposed."""
        waiting = sum(len(listen.waiting) for listen in self._listens.values())
        return len(self._listens), waiting

    def sandbox_gone(self, sandbox_id: str) -> None:
        """The sandbox stopped or is going: end its listens."""
        for listen in self._listens.values():
            if listen.sandbox_id == sandbox_id:
                listen.end(
                    SandboxFailed(
                        f"sandbox {sandbox_id} stopped or was removed: "
                        f"{listen.where()} no longer reaches the host",
                        sandbox_id=sandbox_id,
                    )
                )

    async def take_over(self, owner: str, req: ListenPort) -> None:
        """End an older listen of `owner` on the same port, and wait until it is closed."""
        for listen in list(self._listens.values()):
            same = (listen.sandbox_id, listen.address, listen.port)
            if listen.owner == owner and same == (req.sandbox_id, req.address, req.port):
                listen.end(AlreadyExists(f"a newer listen took over {listen.where()}"))
                with anyio.move_on_after(TAKE_OVER_TIMEOUT):
                    await listen.closed.wait()

    def claim(self, conn: Connection, req: ClaimConnection) -> tuple[_Listen, ByteStream]:
        """The waiting connection a claim names; `NotFound` if it is not (or no longer) there."""
        listen = self._listens.get((conn, req.listen))
        if listen is None or listen.sandbox_id != req.sandbox_id:
            raise NotFound(
                f"no listen {req.listen} on sandbox {req.sandbox_id} on this link",
                sandbox_id=req.sandbox_id,
            )
        inside = listen.waiting.pop(req.connection, None)
        timer = listen.timers.pop(req.connection, None)
        if timer is not None:
            timer.cancel()
        if inside is None:
            raise NotFound(
                f"connection {req.connection} to {listen.where()} is not waiting "
                f"(claimed already, or reset after {CLAIM_TIMEOUT:g} s unclaimed)",
                sandbox_id=req.sandbox_id,
            )
        return listen, inside

    def add(self, conn: Connection, request_id: int, listen: _Listen) -> None:
        self._listens[(conn, request_id)] = listen

    def remove(self, conn: Connection, request_id: int) -> None:
        self._listens.pop((conn, request_id), None)


class _Server(Protocol):
    runtime: ContainerRuntime
    host_ports: HostPorts


async def listen_port(server: _Server, conn: Connection, req: ListenPort) -> Reply:
    """Handler of `ListenPort`: listen until cancelled or the sandbox goes (then raise)."""
    owner = conn.principal.key
    if req.port:
        await server.host_ports.take_over(owner, req)
    listener = await server.runtime.listen(req.sandbox_id, req.address, req.port)
    listen = _Listen(owner, req.sandbox_id, req.address, listener.port)
    server.host_ports.add(conn, req.id, listen)
    try:
        async with anyio.create_task_group() as tg:
            await conn.send(Listening(id=req.id, port=listener.port))
            tg.start_soon(_accept_all, conn, req.id, listener, listen, tg)
            await listen.ended.wait()
            tg.cancel_scope.cancel()
    finally:
        server.host_ports.remove(conn, req.id)
        with anyio.CancelScope(shield=True):
            await listener.aclose()
            waiting, listen.waiting = list(listen.waiting.values()), {}
            for inside in waiting:
                await _reset_and_close(inside)
            listen.closed.set()
    assert listen.reason is not None
    raise listen.reason


async def _accept_all(
    conn: Connection, request_id: int, listener: PortListener, listen: _Listen, tg: TaskGroup
) -> None:
    while True:
        try:
            inside = await listener.accept()
        except (OSError, anyio.BrokenResourceError) as exc:
            listen.end(SandboxFailed(f"listening on {listen.where()} failed: {exc}"))
            return
        if len(listen.waiting) >= MAX_WAITING:
            await _reset_and_close(inside)  # the caller is not keeping up: refuse, don't hoard
            continue
        listen.accepted += 1
        number = listen.accepted
        listen.waiting[number] = inside
        tg.start_soon(_expire, listen, number)
        try:
            await conn.send(Accepted(id=request_id, connection=number))
        except RockError as exc:
            listen.end(exc)
            return


async def _expire(listen: _Listen, number: int) -> None:
    with anyio.CancelScope() as timer:  # cancelled by the claim
        listen.timers[number] = timer
        await anyio.sleep(CLAIM_TIMEOUT)
    listen.timers.pop(number, None)
    inside = listen.waiting.pop(number, None)
    if inside is not None:
        await _reset_and_close(inside)


async def _reset_and_close(inside: ByteStream) -> None:
    reset(inside)
    await inside.aclose()


async def claim_connection(server: _Server, conn: Connection, req: ClaimConnection) -> ForwardReply:
    """Handler of `ClaimConnection`: carry (or, with ``reject``, reset) one waiting connection."""
    listen, inside = server.host_ports.claim(conn, req)
    if req.reject:
        with anyio.CancelScope(shield=True):
            await _reset_and_close(inside)
        return ForwardReply(id=req.id, bytes_in=0, bytes_out=0)
    return await carry(conn, req.id, inside, f"a connection to {listen.where()}")


__all__ = ["CLAIM_TIMEOUT", "MAX_WAITING", "HostPorts", "claim_connection", "listen_port"]
