"""The agent: what each protocol request does, against one runtime, for many connections.

The connection itself (handshake, decoding, cancellation, credit, error replies) is the shared
endpoint's (`rock_core.serving`); this module decides. Handlers live by topic: sessions and
commands (`_commands`), files (`_files`), images (`_images`), stats, ports; which one serves
each request, and whether a connection may make it, is `_routes`'s.

Rules:
- A bad request never crashes the agent, kills a session or leaks a container: every
  handler's failure becomes an `ErrorReply` on that request only.
- Owners are scoped by user: a connection acts for (its peer's uid, `Hello.owner`). It sees,
  changes and lists only its own sandboxes; another owner's sandbox is `SandboxNotFound`, and
  creating an id another owner holds is `AlreadyExists`. An administrator's connection
  (`Hello.admin`, the `rock` CLI) may act on every owner of its user, and root's on all.
- Every owner holds a lease (`_leases`) that each of its messages renews. A shared agent (the
  socket mode, over SSH) keeps a disconnected owner's sandboxes for the rest of the lease, so a
  program whose link drops can reconnect and find them; when the lease ends they are removed.
  An agent serving one local program (`reap_on_disconnect`, the stdio mode) removes them when
  the link closes, unless the owner's process is still alive (the one its identity names,
  else the one that started the agent): a closed link is never taken for "owner gone" while
  the owner lives (see `linger`).
- An owner that is a local process and is gone (checked at start and periodically) has its
  sandboxes reaped at once.
- Sessions live in the agent's memory; containers are the engine's. An agent that restarts
  adopts the containers labelled with its host id (their sessions are gone, and a request for
  one says so); their owners get a fresh lease from that moment.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from functools import partial

import anyio

from rock_core import BadRequest, RockError, TransportError
from rock_core.protocol import (
    ClientMessage,
    CreateSandbox,
    Reply,
    Request,
    SandboxChanged,
    Welcome,
)
from rock_core.serving import ByteStream, Connection, Peer, local_owner_alive, serve_connection

from . import _checkpoints, _commands, _images, _procs, _reverse, _sandboxes, _terminal, _top
from ._admit import AdmissionMetrics, HostAdmission, Limits
from ._capabilities import CAPABILITIES
from ._ends_log import EndsLog, removal_reason
from ._expiry import DeadlineKeeper
from ._labels import LABEL_LEASED, owner_key, split_owner_key
from ._leases import Leases
from ._metrics import AgentMetrics
from ._pause import Pauser
from ._routes import HANDLERS, authorize
from ._runtime import ContainerRuntime, Resources
from ._shell import ShellSession
from ._version import AGENT_VERSION

log = logging.getLogger("rock_agent")

NOTIFY_TIMEOUT = 2.0  # seconds a connection may take to accept a pushed event
LINGER_POLL = 1.0  # seconds between checks that a disconnected local owner still lives


class AgentServer:
    """One agent process: one runtime, many connections, the sessions of all sandboxes."""

    version = AGENT_VERSION

    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        reap_interval: float = 30.0,
        lease: float = 60.0,
        reap_on_disconnect: bool = True,
        limits: Limits | None = None,  # the shared admission (`_admit`); default: see there
    ) -> None:
        self.runtime = runtime
        self.admission = HostAdmission(
            limits or Limits(capacity=not reap_on_disconnect), leased_only=not reap_on_disconnect
        )
        self.host_id = runtime.host_id
        self.instance = secrets.token_hex(8)
        self.sessions: dict[tuple[str, str], ShellSession] = {}
        self.session_opens = anyio.CapacityLimiter(_commands.SESSION_OPENS)
        self.leases = Leases(lease)
        self.reap_on_disconnect = reap_on_disconnect
        if not reap_on_disconnect:
            runtime.extra_labels[LABEL_LEASED] = "1"
        self.connections = 0
        self.last_activity = time.monotonic()
        self.reap_interval = reap_interval  # seconds between looks for orphans (`open_agent`)
        self._resources: Resources | None = None
        self.created_here: set[str] = set()
        self.creating: dict[str, set[anyio.Event]] = {}  # creates on their way (`_sandboxes`)
        self.adopted_ids: set[str] = set()
        # Owner keys disconnected while their process lives: each with its "is it gone?" test.
        self._lingering: dict[str, Callable[[], bool]] = {}
        self.first_reap_done = anyio.Event()
        self.image_usage = _images.ImageUsage()
        self.keeper = DeadlineKeeper(runtime, notify=self._notify, drop_sessions=self.drop_sessions)
        self.pauser = Pauser(runtime, self.keeper)  # resumes a paused sandbox on use (`handle`)
        self._owner_connections: dict[str, set[Connection]] = {}
        self.host_ports = _reverse.HostPorts()  # listens reaching the callers' ports
        self.metrics = AgentMetrics()  # this agent's own registry (`_metrics`)
        self.metrics.registry.register(AdmissionMetrics(self.admission))
        self.top = _top.TopState()  # what the live view needs beyond the engine
        self.ends = EndsLog()  # the latest ends told to owners, for `ReadEnds`
        self.terminals = _terminal.Terminals()  # open terminals, by (connection, request id)

    def adopted(self, sandbox_id: str) -> bool:
        """True if this agent found the sandbox from its labels (its sessions are gone)."""
        return sandbox_id in self.adopted_ids

    # ------------------------------------------------------------------ lifecycle

    async def reap_orphans(self) -> tuple[int, int]:
        """Adopt this host's containers; reap those whose owner process is gone.

        Returns (adopted, reaped).
        """
        adopted = reaped = 0
        now = time.monotonic()
        leased_owners: set[str] = set()
        for info in await self.runtime.list_sandboxes():
            key = owner_key(info.owner_uid, info.owner)
            if _owner_gone(info.owner) and not self.leases.connected(key):
                if await self._remove_quietly(info.sandbox_id, "owner_gone"):
                    self.ends.removed(key, info.sandbox_id, "owner_gone")
                reaped += 1
                continue
            adopted += 1
            if info.labels.get(LABEL_LEASED) == "1" and not self.reap_on_disconnect:
                # Only a socket agent keeps leases; a program's private agent (`rock ps`,
                # `rock port`) must never end the lease of another owner's sandboxes.
                self.leases.seen(key, now)
                leased_owners.add(key)
            if info.sandbox_id not in self.created_here:
                self.adopted_ids.add(info.sandbox_id)
        gone = lambda k: _owner_gone(split_owner_key(k)[1]) and not self.leases.connected(k)  # noqa: E731
        await _checkpoints.reap_where(self, gone)
        for key in leased_owners:
            await self.keeper.track_owner(key)  # their deadlines hold while no one connects
        return adopted, reaped

    async def reap_expired(self) -> int:
        """Remove the sandboxes of owners whose lease has ended; return how many."""
        removed = 0
        for key in self.leases.expired(time.monotonic()):
            count = await self._remove_owned(
                key,
                leased_only=True,
                unless=partial(self.leases.connected, key),
                end="lease_expired",
            )
            if count is None:
                continue  # not listed, or it came back while we listed
            removed += count
            log.info("lease ended", extra={"owner": key, "removed": count})
            self.leases.forget(key)
            self.keeper.forget_owner(key)
        return removed

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
        for key, connections in self._owner_connections.items():
            for conn in connections:
                silent = now - conn.last_seen
                if silent > self.leases.length(key):
                    log.warning(
                        "closing a silent connection",
                        extra={"owner": key, "silent_seconds": round(silent, 1)},
                    )
                    conn.close()

    async def _notify(self, owner: str, change: SandboxChanged) -> None:
        """Tell the owner's connections that accept it that one of its sandboxes changed.

        All at once, each bounded: engine events wait for this. A connection that cannot take
        a small message within `NOTIFY_TIMEOUT` is closed (a send cut short may have left half
        a frame on it); its client reconnects and reconciles.
        """
        self.ends.add(owner, change)
        targets = [c for c in self._owner_connections.get(owner, ()) if "changed" in c.accepts]

        async def tell(conn: Connection) -> None:
            with contextlib.suppress(TransportError):
                with anyio.move_on_after(NOTIFY_TIMEOUT) as scope:
                    await conn.send(change)
                if scope.cancelled_caught:
                    log.warning("closing a connection that takes no events", extra={"owner": owner})
                    conn.close()

        async with anyio.create_task_group() as tg:
            for conn in targets:
                tg.start_soon(tell, conn)

    def idle_since(self) -> float | None:
        """Since when this agent has had no connection and no lease to keep; None if busy."""
        if self.connections or len(self.leases):
            return None
        return self.last_activity

    async def linger(self) -> None:
        """Stay while an owner that lost its link still lives and has sandboxes here (stdio).

        Its sandboxes go when its process ends; a program that reconnects meanwhile (through a
        new agent) finds them, and once it has deleted them there is nothing left to wait for.
        Returns once no such owner is left.
        """
        while self._lingering:
            for key, gone in list(self._lingering.items()):
                if gone():
                    del self._lingering[key]
                    await self._remove_owned(key)
                    continue
                with contextlib.suppress(RockError):
                    if not await self.runtime.list_sandboxes(owner=key):
                        self._lingering.pop(key, None)  # deleted by the program's new link
            if self._lingering:
                await anyio.sleep(LINGER_POLL)

    async def _remove_quietly(self, sandbox_id: str, end: str = "") -> bool:
        self.adopted_ids.discard(sandbox_id)
        await self.drop_sessions(sandbox_id)
        if end:  # the engine's events of this removal carry why (`_ends_log`)
            self.keeper.note(sandbox_id, end, removal_reason(end), "destroy")
        try:
            await self.runtime.remove(sandbox_id)
            self.keeper.forget(sandbox_id)
            log.info("removed sandbox", extra={"sandbox": sandbox_id})
        except RockError as exc:
            log.warning("could not remove sandbox %s: %s", sandbox_id, exc)
            return False
        return True

    async def drop_sessions(self, sandbox_id: str) -> None:
        """Kill and forget every session of a sandbox (it stopped, or is going), and end the
        listens in it."""
        self.host_ports.sandbox_gone(sandbox_id)
        for key in [k for k in self.sessions if k[0] == sandbox_id]:
            session = self.sessions.pop(key)
            await session.kill()

    async def aclose(self) -> None:
        """Kill every session (containers stay; their owners decide)."""
        for session in list(self.sessions.values()):
            await session.kill()
        self.sessions.clear()

    # ------------------------------------------------------------------ connections

    @property
    def engine_answered(self) -> bool:
        """Whether the engine has answered this agent (a client was welcomed)."""
        return self._resources is not None

    async def serve(self, stream: ByteStream, peer: Peer) -> None:
        """Serve one connection until it ends; never raises (but cancellation)."""
        await serve_connection(stream, self, peer=peer)

    async def accept(self, conn: Connection) -> Welcome:
        """Welcome a client: what this host has, and the lease its owner holds."""
        if self._resources is None:
            self._resources = await self.runtime.engine_resources()
        images = await self.runtime.local_images()
        disk = ["disk-limits"] if await self.runtime.supports_disk_limits() else []
        key = conn.principal.key
        lease = 0.0
        if not conn.principal.admin:
            lease = self.leases.connect(key, time.monotonic(), conn.hello.lease)
            self._lingering.pop(key, None)
            self._owner_connections.setdefault(key, set()).add(conn)
        self.connections += 1
        return Welcome(
            protocol=conn.hello.protocol,
            agent_version=AGENT_VERSION,
            host_id=self.host_id,
            cpus=self._resources.cpus,
            memory=self._resources.memory,
            capabilities=CAPABILITIES + disk + self.admission.capabilities(),
            images=images,
            instance=self.instance,
            lease=lease,
            max_starts=self.admission.limits.max_starts,
            max_sandboxes=self.admission.limits.max_sandboxes,
        )

    def heard(self, conn: Connection, message: ClientMessage) -> None:
        """Every message renews its owner's lease."""
        if not conn.principal.admin:
            self.leases.renew(conn.principal.key, conn.last_seen)

    async def closed(self, conn: Connection) -> None:
        """A connection ended: its owner's lease runs from its last message, or it is reaped."""
        self.connections -= 1
        self.last_activity = time.monotonic()
        self.top.forget(conn)
        if conn.principal.admin:
            return
        key = conn.principal.key
        self._owner_connections.get(key, set()).discard(conn)
        left = self.leases.disconnect(key, conn.last_seen)
        if left > 0 or not self.reap_on_disconnect:
            return
        gone = _gone_test(conn)
        if gone is not None and not gone():
            owned = await self.runtime.list_sandboxes(owner=key)
            if owned:
                log.warning(
                    "the link to a live owner closed with %d sandbox(es) left: keeping them "
                    "until its process ends",
                    len(owned),
                    extra={"owner": key},
                )
                self._lingering[key] = gone
                return
        self.leases.forget(key)
        await self._remove_owned(key)

    async def handle(self, conn: Connection, request: Request) -> Reply:
        """Carry out one request for the connection's principal."""
        handler = HANDLERS.get(type(request))
        if handler is None:
            raise BadRequest(f"this agent cannot handle {type(request).__name__}")
        sandbox_id = getattr(request, "sandbox_id", None)
        if isinstance(sandbox_id, str) and not isinstance(request, CreateSandbox):
            await authorize(self, conn, sandbox_id, request)
        with _sandboxes.on_its_way(self.creating, request):  # before any wait: a remove waits
            async with self.pauser.use(request):
                with self.keeper.use(request, conn.principal.key):
                    started = time.monotonic()
                    reply = await handler(self, conn, request)
                    self.metrics.answered(request, reply, time.monotonic() - started)
                    return reply

    async def _remove_owned(
        self,
        key: str,
        *,
        leased_only: bool = False,
        unless: Callable[[], bool] | None = None,
        end: str = "owner_gone",  # why, in the log of ends (`_ends_log`)
    ) -> int | None:
        """Remove the sandboxes of owner `key` (only those kept under a lease, with
        `leased_only`); return how many, or None if they could not be listed or `unless()`
        turned true while they were."""
        try:
            owned = await self.runtime.list_sandboxes(owner=key)
        except RockError as exc:
            log.warning("cannot list sandboxes of %s to reap them: %s", key, exc)
            return None
        if unless is not None and unless():
            return None
        if leased_only:
            owned = [info for info in owned if info.labels.get(LABEL_LEASED) == "1"]
        for info in owned:
            if await self._remove_quietly(info.sandbox_id, end):
                self.ends.removed(key, info.sandbox_id, end)
        await _checkpoints.reap_owner(self, key)
        return len(owned)


def _owner_gone(owner: str) -> bool:
    return local_owner_alive(owner, socket.gethostname(), _procs.alive, _procs.start_time) is False


def _gone_test(conn: Connection) -> Callable[[], bool] | None:
    """How to tell that the program behind a closed connection has ended: its owner identity
    names its process (`rock_core.serving.local_owner_alive`), else the process that started a
    stdio agent is the program (an owner named by the caller, such as "run-42"). None if no
    process is known.
    """
    owner = conn.owner
    if local_owner_alive(owner, socket.gethostname(), _procs.alive, _procs.start_time) is not None:
        return lambda: _owner_gone(owner)
    pid = conn.peer.pid
    start = _procs.start_time(pid) if pid is not None and pid > 1 else None
    if pid is None or start is None:
        return None
    return lambda: not _procs.alive(pid) or _procs.start_time(pid) != start


__all__ = ["AgentServer"]
