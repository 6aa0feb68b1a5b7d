"""The agent: answers protocol requests from any number of connections against one runtime.

Rules:
- A bad request never crashes the agent, kills a session or leaks a container: every handler's
  failure becomes an `ErrorReply` on that request only; unexpected exceptions are logged and
  reported as internal errors.
- Each connection belongs to an owner (from `Hello`). Sandboxes carry their owner's label, and
  every owner holds a lease (`_leases`) that each of its messages renews. An agent serving one
  local program (`reap_on_disconnect`, the stdio mode) removes the owner's sandboxes as soon as
  its connection ends. A shared agent (the socket mode, over SSH) keeps them for the rest of
  the lease, so a program whose link drops can reconnect and find them; when the lease ends
  they are removed. An owner that is a local process and is gone (checked at start and
  periodically) has its sandboxes reaped at once.
- Sessions live in the agent's memory; containers are the engine's. An agent that restarts
  adopts the containers labelled with its host id (their sessions are gone, and a request for
  one says so); their owners get a fresh lease from that moment.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
import socket
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import IO, Any, ClassVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rock_core._channel import WINDOW, ByteStream, CreditGate, FramedChannel, send_stream
from rock_core._errors import (
    AlreadyExists,
    BadRequest,
    FileNotFound,
    ProtocolError,
    RockError,
    SessionNotFound,
    TimedOut,
    TransportError,
)
from rock_core._owner import local_owner_alive
from rock_core._protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ClientMessage,
    CloseSession,
    CommandReply,
    CommitSandbox,
    CreateSandbox,
    CreateSession,
    DeadlinesReply,
    Done,
    Download,
    ErrorReply,
    ExecReply,
    Execute,
    Expect,
    ExpectReply,
    FileReply,
    FileStat,
    ForwardPort,
    Hello,
    InspectSandbox,
    Interrupt,
    Keepalive,
    ListImages,
    ListSandboxes,
    Output,
    Ping,
    Pong,
    PruneImages,
    ReadFile,
    ReadStats,
    RemoveSandbox,
    Reply,
    Request,
    RunCommand,
    SandboxChanged,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    SendInput,
    SetTimeouts,
    StartSandbox,
    StopSandbox,
    StreamCredit,
    StreamData,
    TransferReply,
    Upload,
    WaitCommand,
    WarmImage,
    Welcome,
    WriteFile,
    decode_client_message,
)
from rock_core._tar import END, file_header, padding, single_file

from . import _images, _ports, _procs, _stats
from ._docker import DockerRuntime
from ._expiry import DeadlineKeeper
from ._labels import LABEL_LEASED
from ._leases import Leases
from ._shell import ShellSession
from ._version import AGENT_VERSION

log = logging.getLogger("rock_agent")

READ_FILE_LIMIT = 64 << 20
SESSION_OPENS = 16  # shells being started at once, per agent
NOTIFY_TIMEOUT = 2.0  # seconds a connection may take to accept a pushed event
CAPABILITIES = [
    "sessions",
    "interactive",
    "execute",
    "files",
    "archives",
    "owner-reaping",
    "leases",
    "images",
    "commit",
    "stats",
    "ports",
    "timeouts",
    "events",
]


class _Connection:
    """Per-connection state: in-flight requests and the streams they move."""

    def __init__(
        self, channel: FramedChannel[ClientMessage], owner: str, accepts: list[str]
    ) -> None:
        self.channel = channel
        self.owner = owner
        self.accepts = frozenset(accepts)  # unasked messages it understands
        self.scopes: dict[int, anyio.CancelScope] = {}
        self.uploads: dict[int, MemoryObjectSendStream[bytes | None]] = {}
        self.gates: dict[int, CreditGate] = {}
        self.last_seen = time.monotonic()  # when this connection last said anything
        self.scope: anyio.CancelScope | None = None  # cancelling it closes the connection

    async def send(self, message: Any) -> None:
        await self.channel.send(message)

    def gate(self, request_id: int) -> CreditGate:
        """The credit gate of the stream a request sends (made on first use by either side)."""
        return self.gates.setdefault(request_id, CreditGate())


class AgentServer:
    """One agent process: one runtime, many connections, the sessions of all sandboxes."""

    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        reap_interval: float = 30.0,
        lease: float = 60.0,
        reap_on_disconnect: bool = True,
    ) -> None:
        self.runtime = runtime
        self.host_id = runtime.host_id
        self.instance = secrets.token_hex(8)
        self.sessions: dict[tuple[str, str], ShellSession] = {}
        self.leases = Leases(lease)
        self.reap_on_disconnect = reap_on_disconnect
        if not reap_on_disconnect:
            runtime.extra_labels[LABEL_LEASED] = "1"
        self.connections = 0
        self.last_activity = time.monotonic()
        self._reap_interval = reap_interval
        self._resources: tuple[float, int] | None = None
        self._created_here: set[str] = set()
        self._session_opens = anyio.CapacityLimiter(SESSION_OPENS)
        self._adopted: set[str] = set()
        self.first_reap_done = anyio.Event()
        self.image_usage = _images.ImageUsage()
        self.keeper = DeadlineKeeper(
            runtime, notify=self._notify, drop_sessions=self._drop_sessions
        )
        self._owner_connections: dict[str, set[_Connection]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def reap_orphans(self) -> tuple[int, int]:
        """Adopt this host's containers; reap those whose owner process is gone.

        Returns (adopted, reaped).
        """
        adopted = reaped = 0
        now = time.monotonic()
        leased_owners: set[str] = set()
        for info in await self.runtime.list_sandboxes():
            if _owner_gone(info.owner) and not self.leases.connected(info.owner):
                await self._remove_quietly(info.sandbox_id)
                reaped += 1
                continue
            adopted += 1
            if info.labels.get(LABEL_LEASED) == "1" and not self.reap_on_disconnect:
                # Only a socket agent keeps leases; a program's private agent (`rock ps`,
                # `rock port`) must never end the lease of another owner's sandboxes.
                self.leases.seen(info.owner, now)
                leased_owners.add(info.owner)
            if info.sandbox_id not in self._created_here:
                self._adopted.add(info.sandbox_id)
        for owner in leased_owners:
            await self.keeper.track_owner(owner)  # their deadlines hold while no one connects
        return adopted, reaped

    async def reap_expired(self) -> int:
        """Remove the sandboxes of owners whose lease has ended; return how many."""
        removed = 0
        for owner in self.leases.expired(time.monotonic()):
            count = await self._remove_owned(
                owner, leased_only=True, unless=partial(self.leases.connected, owner)
            )
            if count is None:
                continue  # not listed, or it came back while we listed
            removed += count
            log.info("lease ended", extra={"owner": owner, "removed": count})
            self.leases.forget(owner)
            self.keeper.forget_owner(owner)
        return removed

    async def lease_loop(self) -> None:
        """Check for ended leases often enough to act within a few seconds of the deadline."""
        interval = max(0.2, min(2.0, self.leases.default / 10))
        await self.first_reap_done.wait()
        while True:
            self.close_silent_connections()
            await self.reap_expired()
            await anyio.sleep(interval)

    def close_silent_connections(self) -> None:
        """Close connections silent for longer than their owner's lease (a socket agent).

        A client that vanished without closing (power loss, a partition) can leave its
        connection open for hours (sshd keeps a forwarded channel; TCP keepalive takes about
        2 h), and an open connection holds the lease. A live core sends heartbeats far more
        often than a lease lasts.
        """
        if self.reap_on_disconnect:
            return
        now = time.monotonic()
        for connections in self._owner_connections.values():
            for conn in connections:
                silent = now - conn.last_seen
                if silent > self.leases.length(conn.owner) and conn.scope is not None:
                    log.warning(
                        "closing a silent connection",
                        extra={"owner": conn.owner, "silent_seconds": round(silent, 1)},
                    )
                    conn.scope.cancel()

    async def deadline_loop(self) -> None:
        """Enforce idle timeouts, lifetimes and auto-delete (after the start-up adoption)."""
        await self.first_reap_done.wait()
        await self.keeper.run()

    async def _notify(self, owner: str, change: SandboxChanged) -> None:
        """Tell the owner's connections that accept it that one of its sandboxes changed.

        All at once, each bounded: engine events wait for this. A connection that cannot take
        a small message within `NOTIFY_TIMEOUT` is closed (a send cut short may have left half
        a frame on it); its client reconnects and reconciles.
        """
        targets = [c for c in self._owner_connections.get(owner, ()) if "changed" in c.accepts]

        async def tell(conn: _Connection) -> None:
            with contextlib.suppress(TransportError):
                with anyio.move_on_after(NOTIFY_TIMEOUT) as scope:
                    await conn.send(change)
                if scope.cancelled_caught and conn.scope is not None:
                    log.warning("closing a connection that takes no events", extra={"owner": owner})
                    conn.scope.cancel()

        async with anyio.create_task_group() as tg:
            for conn in targets:
                tg.start_soon(tell, conn)

    def idle_since(self) -> float | None:
        """Since when this agent has had no connection and no lease to keep; None if busy."""
        if self.connections or len(self.leases):
            return None
        return self.last_activity

    async def reap_loop(self) -> None:
        """Reap orphans at start, then periodically (owners that died without disconnecting)."""
        first = True
        while True:
            try:
                adopted, reaped = await self.reap_orphans()
                if first or reaped:
                    log.info(
                        "checked for orphaned sandboxes",
                        extra={"host": self.host_id, "adopted": adopted, "reaped": reaped},
                    )
            except RockError as exc:
                log.warning("could not check for orphaned sandboxes: %s", exc)
            first = False
            self.first_reap_done.set()
            await anyio.sleep(self._reap_interval)

    async def _remove_quietly(self, sandbox_id: str) -> None:
        self._adopted.discard(sandbox_id)
        await self._drop_sessions(sandbox_id)
        try:
            await self.runtime.remove(sandbox_id)
            self.keeper.forget(sandbox_id)
            log.info("removed sandbox", extra={"sandbox": sandbox_id})
        except RockError as exc:
            log.warning("could not remove sandbox %s: %s", sandbox_id, exc)

    async def _drop_sessions(self, sandbox_id: str) -> None:
        for key in [k for k in self.sessions if k[0] == sandbox_id]:
            session = self.sessions.pop(key)
            await session.kill()

    async def aclose(self) -> None:
        """Kill every session (containers stay; their owners decide)."""
        for session in list(self.sessions.values()):
            await session.kill()
        self.sessions.clear()

    # ------------------------------------------------------------------ connections

    async def serve(self, stream: ByteStream) -> None:
        """Serve one connection until it ends; then reap its owner's sandboxes if it was last."""
        channel: FramedChannel[ClientMessage] = FramedChannel(stream, decode_client_message)
        try:
            hello = await channel.receive()
        except RockError as exc:
            log.warning("bad handshake: %s", exc)
            return
        if hello is None:
            return
        if not isinstance(hello, Hello):
            await channel.send(
                ErrorReply(id=0, code=ProtocolError.code, message="expected hello first")
            )
            return
        if hello.protocol != PROTOCOL_VERSION:
            await channel.send(
                ErrorReply(
                    id=0,
                    code=ProtocolError.code,
                    message=f"client speaks protocol {hello.protocol}; "
                    f"agent {AGENT_VERSION} speaks {PROTOCOL_VERSION}",
                )
            )
            return
        if not hello.owner:
            await channel.send(
                ErrorReply(id=0, code=BadRequest.code, message="hello carries no owner")
            )
            return
        if self._resources is None:
            self._resources = await self.runtime.engine_resources()
        cpus, memory = self._resources
        images = await self.runtime.local_images()
        lease = self.leases.connect(hello.owner, time.monotonic(), hello.lease)
        self.connections += 1
        conn = _Connection(channel, hello.owner, hello.accepts)
        self._owner_connections.setdefault(hello.owner, set()).add(conn)
        try:
            await channel.send(
                Welcome(
                    protocol=PROTOCOL_VERSION,
                    agent_version=AGENT_VERSION,
                    host_id=self.host_id,
                    cpus=cpus,
                    memory=memory,
                    capabilities=CAPABILITIES,
                    images=images,
                    instance=self.instance,
                    lease=lease,
                )
            )
            async with anyio.create_task_group() as tg:
                conn.scope = tg.cancel_scope
                tg.start_soon(self.keeper.track_owner, hello.owner)
                await self._read_loop(conn, tg)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._disconnect(conn)
                with contextlib.suppress(OSError, anyio.BrokenResourceError, RockError):
                    await channel.aclose()  # the peer sees end-of-stream; the socket is freed

    async def _disconnect(self, conn: _Connection) -> None:
        self.connections -= 1
        self._owner_connections.get(conn.owner, set()).discard(conn)
        self.last_activity = time.monotonic()
        left = self.leases.disconnect(conn.owner, conn.last_seen)
        if left > 0 or not self.reap_on_disconnect:
            return
        self.leases.forget(conn.owner)
        await self._remove_owned(conn.owner)

    async def _remove_owned(
        self,
        owner: str,
        *,
        leased_only: bool = False,
        unless: Callable[[], bool] | None = None,
    ) -> int | None:
        """Remove `owner`'s sandboxes (only those kept under a lease, with `leased_only`);
        return how many, or None if they could not be listed or `unless()` turned true
        while they were."""
        try:
            owned = await self.runtime.list_sandboxes(owner=owner)
        except RockError as exc:
            log.warning("cannot list sandboxes of %s to reap them: %s", owner, exc)
            return None
        if unless is not None and unless():
            return None
        if leased_only:
            owned = [info for info in owned if info.labels.get(LABEL_LEASED) == "1"]
        for info in owned:
            await self._remove_quietly(info.sandbox_id)
        return len(owned)

    async def _read_loop(self, conn: _Connection, tg: TaskGroup) -> None:
        leases, owner = self.leases, conn.owner
        while True:
            try:
                message = await conn.channel.receive()
                conn.last_seen = now = time.monotonic()
                leases.renew(owner, now)
            except ProtocolError as exc:
                log.warning("closing a connection that sent garbage: %s", exc)
                with contextlib.suppress(RockError):
                    await conn.send(ErrorReply(id=0, code=exc.code, message=str(exc)))
                return
            except TransportError:
                return
            if message is None:
                return
            if isinstance(message, StreamData):
                upload = conn.uploads.get(message.id)
                if upload is not None:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        upload.send_nowait(None if message.end else message.data)
            elif isinstance(message, StreamCredit):
                # Credit may arrive before the handler that sends the stream has started.
                if message.id in conn.scopes:
                    conn.gate(message.id).grant(message.chunks)
            elif isinstance(message, Cancel):
                scope = conn.scopes.get(message.target)
                if scope is not None:
                    scope.cancel()
            elif isinstance(message, Hello):
                await conn.send(ErrorReply(id=0, code=ProtocolError.code, message="second hello"))
            elif message.id in conn.scopes:
                await conn.send(
                    ErrorReply(
                        id=message.id,
                        code=BadRequest.code,
                        message=f"request id {message.id} is already in use on this connection",
                    )
                )
            else:
                scope = anyio.CancelScope()
                conn.scopes[message.id] = scope
                tg.start_soon(self._handle, conn, message, scope)

    async def _handle(self, conn: _Connection, request: Request, scope: anyio.CancelScope) -> None:
        reply: Reply
        try:
            with scope, self.keeper.use(request, conn.owner):
                reply = await self._dispatch(conn, request)
            if scope.cancelled_caught:
                reply = ErrorReply(id=request.id, code=TimedOut.code, message="request cancelled")
        except RockError as exc:
            reply = ErrorReply(
                id=request.id, code=exc.code, message=exc.message, details=_plain(exc.details)
            )
        except Exception as exc:
            log.exception("internal error handling %s", type(request).__name__)
            reply = ErrorReply(
                id=request.id,
                code=RockError.code,
                message=f"internal agent error in {type(request).__name__}: "
                f"{type(exc).__name__}: {exc}",
            )
        finally:
            conn.scopes.pop(request.id, None)
            upload = conn.uploads.pop(request.id, None)
            if upload is not None:
                upload.close()
            conn.gates.pop(request.id, None)
        with contextlib.suppress(TransportError):
            await conn.send(reply)

    async def _dispatch(self, conn: _Connection, request: Request) -> Reply:
        handler = self._handlers.get(type(request))
        if handler is None:
            raise BadRequest(f"this agent cannot handle {type(request).__name__}")
        return await handler(self, conn, request)

    # ------------------------------------------------------------------ sandboxes

    async def _ping(self, conn: _Connection, req: Ping) -> Reply:
        return Pong(id=req.id, time=time.time())

    async def _create(self, conn: _Connection, req: CreateSandbox) -> Reply:
        _check_id(req.sandbox_id)
        self.keeper.check(req.spec)
        self._created_here.add(req.sandbox_id)
        info = await self.runtime.create(req.sandbox_id, req.spec, conn.owner)
        self.keeper.created(info, req.spec, conn.owner)
        await _images.note_use(self, req.spec.image)
        return SandboxReply(id=req.id, sandbox=self._with_sessions(info))

    async def _stop(self, conn: _Connection, req: StopSandbox) -> Reply:
        keeper = self.keeper
        keeper.note(req.sandbox_id, "request", f"stopped at the request of {conn.owner}", "die")
        await self._drop_sessions(req.sandbox_id)
        await self.runtime.stop(req.sandbox_id, req.timeout)
        keeper.stopped_now(req.sandbox_id, "request")
        return SandboxReply(id=req.id, sandbox=await self._inspected(req.sandbox_id))

    async def _start(self, conn: _Connection, req: StartSandbox) -> Reply:
        keeper = self.keeper
        keeper.note(req.sandbox_id, "request", f"started at the request of {conn.owner}", "start")
        await self.runtime.start(req.sandbox_id)
        keeper.started_now(req.sandbox_id)
        return SandboxReply(id=req.id, sandbox=await self._inspected(req.sandbox_id))

    async def _remove(self, conn: _Connection, req: RemoveSandbox) -> Reply:
        await self.runtime.inspect(req.sandbox_id)  # a clear not-found for unknown ids
        why = f"removed at the request of {conn.owner}"
        self.keeper.note(req.sandbox_id, "request", why, "destroy")
        await self._drop_sessions(req.sandbox_id)
        await self.runtime.remove(req.sandbox_id)
        return Done(id=req.id)

    async def _inspect(self, conn: _Connection, req: InspectSandbox) -> Reply:
        return SandboxReply(
            id=req.id, sandbox=self._with_sessions(await self._inspected(req.sandbox_id))
        )

    async def _inspected(self, sandbox_id: str) -> SandboxInfo:
        info = await self.runtime.inspect(sandbox_id)
        info.deadlines = await self.keeper.view(info)
        return info

    async def _list(self, conn: _Connection, req: ListSandboxes) -> Reply:
        removed = []
        if req.owner:
            with anyio.move_on_after(30):
                await self.keeper.track_owner(req.owner)  # deadlines of its sandboxes known
            removed = self.keeper.removed_for(req.owner)
        infos = await self.runtime.list_sandboxes(owner=req.owner)
        for info in infos:
            info.deadlines = self.keeper.table.view(info.sandbox_id)
        return SandboxListReply(
            id=req.id, sandboxes=[self._with_sessions(i) for i in infos], removed=removed
        )

    async def _set_timeouts(self, conn: _Connection, req: SetTimeouts) -> Reply:
        deadlines = await self.keeper.set_timeouts(req, conn.owner)
        return DeadlinesReply(id=req.id, deadlines=deadlines)

    async def _keepalive(self, conn: _Connection, req: Keepalive) -> Reply:
        deadlines = await self.keeper.keepalive(req.sandbox_id, conn.owner)
        return DeadlinesReply(id=req.id, deadlines=deadlines)

    def _with_sessions(self, info: Any) -> Any:
        info.sessions = sorted(name for sid, name in self.sessions if sid == info.sandbox_id)
        return info

    # ------------------------------------------------------------------ sessions

    def _session(self, sandbox_id: str, name: str) -> ShellSession:
        session = self.sessions.get((sandbox_id, name))
        if session is None:
            why = (
                " (sessions do not survive an agent restart: this agent adopted the sandbox"
                " from its labels; create the session again)"
                if sandbox_id in self._adopted
                else ""
            )
            raise SessionNotFound(
                f"sandbox {sandbox_id} has no session {name!r}{why}", sandbox_id=sandbox_id
            )
        return session

    async def _create_session(self, conn: _Connection, req: CreateSession) -> Reply:
        if not req.session or len(req.session) > 128:
            raise BadRequest("a session name must have 1 to 128 characters")
        key = (req.sandbox_id, req.session)
        if key in self.sessions and not self.sessions[key].closed:
            raise AlreadyExists(
                f"sandbox {req.sandbox_id} already has a session {req.session!r}",
                sandbox_id=req.sandbox_id,
            )
        sandbox_id = req.sandbox_id

        async def open_exec(argv: list[str]) -> tuple[Any, Any]:
            return await self.runtime.open_exec(
                sandbox_id, argv, env={"PS1": "", "PS2": "", **req.env}, cwd=req.cwd
            )

        async def save_output(path: str, data: IO[bytes], size: int) -> None:
            await self.runtime.put_archive(sandbox_id, "/", _file_tar(path, data, size))

        # The engine starts about 20 execs a second: opening hundreds of shells at once would
        # only queue them there, each eating its own start-up deadline while it waits.
        async with self._session_opens:
            session = await ShellSession.open(
                req.session, open_exec, self.runtime.exec_pid, self.runtime.wait_exit, save_output
            )
        self.sessions[key] = session
        return Done(id=req.id)

    async def _close_session(self, conn: _Connection, req: CloseSession) -> Reply:
        session = self._session(req.sandbox_id, req.session)
        del self.sessions[(req.sandbox_id, req.session)]
        await session.kill()
        return Done(id=req.id)

    def _live_session(self, sandbox_id: str, name: str) -> ShellSession:
        session = self._session(sandbox_id, name)
        if session.closed:
            # Report the closed session once more, then forget it.
            del self.sessions[(sandbox_id, name)]
        return session

    async def _run(self, conn: _Connection, req: RunCommand) -> Reply:
        session = self._live_session(req.sandbox_id, req.session)
        if req.timeout is not None and req.timeout <= 0:
            raise BadRequest(f"timeout must be positive, got {req.timeout}")
        if req.idle_timeout is not None and req.idle_timeout <= 0:
            raise BadRequest(f"idle_timeout must be positive, got {req.idle_timeout}")
        if req.output_limit < 0:
            raise BadRequest(f"output_limit must not be negative, got {req.output_limit}")
        if req.interactive:
            await session.start_interactive(req.command, req.output_limit)
            return Done(id=req.id)

        async def forward(data: bytes) -> None:
            await conn.send(Output(id=req.id, data=data))

        result = await session.run(
            req.command,
            timeout=req.timeout,
            idle_timeout=req.idle_timeout,
            output_limit=req.output_limit,
            on_output=forward if req.stream else None,
        )
        if result.session_closed:
            self.sessions.pop((req.sandbox_id, req.session), None)
        if req.stream:
            result.output = b""
        return CommandReply(id=req.id, result=result)

    async def _send_input(self, conn: _Connection, req: SendInput) -> Reply:
        await self._session(req.sandbox_id, req.session).send(req.data)
        return Done(id=req.id)

    async def _expect(self, conn: _Connection, req: Expect) -> Reply:
        session = self._session(req.sandbox_id, req.session)
        index, before, match = await session.expect(req.patterns, req.timeout)
        return ExpectReply(id=req.id, index=index, before=before, match=match)

    async def _wait(self, conn: _Connection, req: WaitCommand) -> Reply:
        session = self._session(req.sandbox_id, req.session)
        result = await session.wait(req.timeout)
        if result.session_closed:
            self.sessions.pop((req.sandbox_id, req.session), None)
        return CommandReply(id=req.id, result=result)

    async def _interrupt(self, conn: _Connection, req: Interrupt) -> Reply:
        self._session(req.sandbox_id, req.session).interrupt()
        return Done(id=req.id)

    async def _execute(self, conn: _Connection, req: Execute) -> Reply:
        if req.timeout is not None and req.timeout <= 0:
            raise BadRequest(f"timeout must be positive, got {req.timeout}")
        result = await self.runtime.execute(
            req.sandbox_id,
            req.argv,
            cwd=req.cwd,
            env=req.env,
            stdin=req.stdin,
            timeout=req.timeout,
            kill_tree=_procs.kill_tree,
        )
        return ExecReply(id=req.id, result=result)

    # ------------------------------------------------------------------ files

    async def _read_file(self, conn: _Connection, req: ReadFile) -> Reply:
        _check_path(req.path)
        data = bytearray()
        async with contextlib.aclosing(self.runtime.get_archive(req.sandbox_id, req.path)) as tar:
            async for chunk in tar:
                data += chunk
                if len(data) > READ_FILE_LIMIT + (64 << 10):
                    raise BadRequest(
                        f"{req.path} is larger than {READ_FILE_LIMIT >> 20} MiB; use download()"
                    )
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive:
            member = archive.next()
            if member is None:
                raise FileNotFound(f"{req.path}: nothing there in sandbox {req.sandbox_id}")
            if member.isdir():
                raise BadRequest(f"{req.path} is a folder; use download() for folders")
            if member.issym() or member.islnk():
                raise BadRequest(f"{req.path} is a link to {member.linkname}; read the target")
            extracted = archive.extractfile(member)
            content = extracted.read() if extracted is not None else b""
        return FileReply(id=req.id, data=content)

    async def _write_file(self, conn: _Connection, req: WriteFile) -> Reply:
        _check_path(req.path)
        if req.path.endswith("/"):
            raise BadRequest(f"{req.path} names a folder, not a file")

        async def body() -> AsyncIterator[bytes]:
            yield single_file(req.path, req.data, mode=req.mode)

        await self.runtime.put_archive(req.sandbox_id, "/", body())
        return Done(id=req.id)

    async def _upload(self, conn: _Connection, req: Upload) -> Reply:
        _check_path(req.path)
        send, receive = anyio.create_memory_object_stream[bytes | None](WINDOW * 2)
        conn.uploads[req.id] = send
        received = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal received
            await conn.send(StreamCredit(id=req.id, chunks=WINDOW))
            async for chunk in _until_end(receive):
                received += len(chunk)
                yield chunk
                await conn.send(StreamCredit(id=req.id, chunks=1))

        await self.runtime.put_archive(req.sandbox_id, req.path, chunks())
        return TransferReply(id=req.id, stat=FileStat(path=req.path, size=received))

    async def _download(self, conn: _Connection, req: Download) -> Reply:
        _check_path(req.path)
        # Closed on every exit, cancellation included: an abandoned archive response would
        # keep the engine's tar process, and with it the container, busy.
        async with contextlib.aclosing(self.runtime.get_archive(req.sandbox_id, req.path)) as tar:
            sent = await send_stream(conn.send, conn.gate(req.id), req.id, tar)
        return TransferReply(id=req.id, stat=FileStat(path=req.path, size=sent))

    _handlers: ClassVar[dict[type[Any], Callable[[Any, _Connection, Any], Awaitable[Reply]]]] = {
        Ping: _ping,
        CreateSandbox: _create,
        StopSandbox: _stop,
        StartSandbox: _start,
        RemoveSandbox: _remove,
        InspectSandbox: _inspect,
        ListSandboxes: _list,
        CreateSession: _create_session,
        CloseSession: _close_session,
        RunCommand: _run,
        SendInput: _send_input,
        Expect: _expect,
        WaitCommand: _wait,
        Interrupt: _interrupt,
        Execute: _execute,
        ReadFile: _read_file,
        WriteFile: _write_file,
        Upload: _upload,
        Download: _download,
        ListImages: _images.list_images,
        WarmImage: _images.warm_image,
        PruneImages: _images.prune_images,
        CommitSandbox: _images.commit_sandbox,
        ReadStats: _stats.read_stats,
        ForwardPort: _ports.forward_port,
        SetTimeouts: _set_timeouts,
        Keepalive: _keepalive,
    }


async def _until_end(receive: MemoryObjectReceiveStream[bytes | None]) -> AsyncIterator[bytes]:
    async for chunk in receive:
        if chunk is None:
            return
        yield chunk
    raise TransportError("the upload stream ended before its end marker")


async def _file_tar(path: str, data: IO[bytes], size: int) -> AsyncIterator[bytes]:
    yield file_header(path, size)
    while chunk := await anyio.to_thread.run_sync(data.read, 1 << 20):
        yield chunk
    yield padding(size) + END


def _check_id(sandbox_id: str) -> None:
    if not sandbox_id or len(sandbox_id) > 100:
        raise BadRequest("a sandbox id must have 1 to 100 characters")
    if not all(c.isalnum() or c in "-_." for c in sandbox_id) or sandbox_id[0] in "-_.":
        raise BadRequest(
            f"sandbox id {sandbox_id!r} may hold only letters, digits, '-', '_' and '.', "
            "and must start with a letter or digit"
        )


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise BadRequest(f"path {path!r} must be absolute")
    if "\x00" in path:
        raise BadRequest("a path cannot contain NUL bytes")


def _owner_gone(owner: str) -> bool:
    return local_owner_alive(owner, socket.gethostname(), _procs.alive, _procs.start_time) is False


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, str | int | float | bool | None)}


__all__ = ["AgentServer"]
