"""In-memory stand-ins for an agent and its transport, with no Docker and no processes.

Rules:
- `FakeAgent` speaks the agent protocol over any `ByteStream` for the sandbox lifecycle:
  handshake, ping, create, stop, start, remove, inspect and list (`FakeAgent.request_kinds`,
  read from its handler table). It answers anything else with `BadRequest`.
- What it serves, it answers as the real agent does, checked by one conformance suite run on
  both (`tests/agent/test_agent_conformance.py`): idempotent create, `AlreadyExists` for
  another spec or another owner's id, `SandboxNotFound` (with its `sandbox_id`) for an id the
  connection may not see, `ProtocolError` on a version mismatch, and `SandboxChanged` pushed
  to the owner's connections for each change a request made.
- Deliberate differences from the real agent (it models a local agent with no engine and no
  deadlines): no `lease` in its `Welcome` (an owner's sandboxes go when its last connection
  closes) and only the capability "owners"; labels are the spec's, without the engine's
  `rock.*` labels; a stop's exit code is always 137; no deadlines, so `ListSandboxes` reports
  no `removed` and nothing is pushed but what requests changed.
- Its creates can take a realistic time: a start latency (fixed, or drawn per sandbox from a
  `LatencyDistribution`) behind an engine that begins at most `engine_rate` creates per second.
  Time is anyio's only, so virtual time runs it in milliseconds.
- `FakeAgentConnector` reaches a `FakeAgent` as a cluster reaches any host (a `Connector`):
  each connect opens a fresh memory stream the agent serves.
- `rock_core.testing` is the public face of this module.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Protocol, TypeVar

import anyio

from . import _fake_checkpoint, _fake_pause
from ._channel import ByteStream
from ._connection import unwrap_single_errors
from ._endpoint import Connection, Peer, Principal, serve_connection
from ._errors import AlreadyExists, BadRequest, ImageNotFound, SandboxNotFound
from ._fake_latency import FakeEngine, FakeStart, StartLatency
from ._memory import memory_stream_pair
from ._messages_pause import PauseSandbox, ResumeSandbox
from ._network import NETWORK_POLICY
from ._protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    CreateSandbox,
    Done,
    InspectSandbox,
    ListSandboxes,
    Ping,
    Pong,
    RemoveSandbox,
    Reply,
    Request,
    SandboxChanged,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    SandboxSpec,
    StartSandbox,
    StopSandbox,
    Welcome,
)

M = TypeVar("M", bound=ClientMessage)

FAKE_AGENT_VERSION = "fake"


# ---------------------------------------------------------------------------- agent


class _Sandbox:
    def __init__(self, info: SandboxInfo, spec: SandboxSpec, principal: Principal) -> None:
        self.info = info
        self.spec = spec
        self.principal = principal


class FakeAgent:
    """An agent without a container engine: sandboxes are records in memory.

    `received` lists every message decoded from clients, in order (the `Hello` included), so
    tests can check what a client sent. `protocol` is the version the fake claims in its
    `Welcome` (set it to another value to test a mismatch). Creates of images in `fail_images`
    fail with `ImageNotFound`. `instance` is new for each `FakeAgent`, as the real agent's is
    for each process (a core that reconnects to the same object sees no restart).

    Start timing (both off by default, when a create answers at once):
    - `start_latency` delays every new create (see `StartLatency`): a number of seconds, a
      `LatencyDistribution` drawn per sandbox id, or an async callable.
    - `engine_rate` caps this host's engine: it begins at most that many creates per second,
      first come first served, each waiting its turn before its start latency runs (a real
      engine tops out near 7 creates/s per host). Alone, a create takes its latency; many at
      once finish at about `engine_rate` per second.

    `starts` maps each sandbox id to the `FakeStart` of its latest create that made a sandbox.
    """

    version = FAKE_AGENT_VERSION
    request_kinds: ClassVar[frozenset[type[Request]]]  # what it serves (its handler table)

    def __init__(
        self,
        *,
        host_id: str = "fake-host",
        cpus: float = 4.0,
        memory: int = 16 << 30,
        images: Iterable[str] = (),
        protocol: int = PROTOCOL_VERSION,
        start_latency: StartLatency = None,
        fail_images: Collection[str] = (),
        engine_rate: float | None = None,
    ) -> None:
        self.host_id = host_id
        self.cpus = cpus
        self.memory = memory
        self.images = sorted(images)
        self.protocol = protocol
        self._engine = FakeEngine(start_latency, engine_rate)  # checks engine_rate
        self.fail_images = frozenset(fail_images)
        self.starts: dict[str, FakeStart] = {}
        self.sandboxes: dict[str, _Sandbox] = {}
        self.received: list[ClientMessage] = []
        self._arrived: anyio.Event | None = None  # made lazily: needs a running event loop
        self._streams: set[ByteStream] = set()
        self.instance = secrets.token_hex(8)
        self._owner_connections: dict[str, set[Connection]] = {}
        self._container_ids = itertools.count(1)
        self.checkpoints: dict[str, Any] = {}  # by id (`_fake_checkpoint`)

    @property
    def start_latency(self) -> StartLatency:
        """How long each new create takes (see `StartLatency`)."""
        return self._engine.latency

    @property
    def engine_rate(self) -> float | None:
        """Creates per second this host's engine begins at most (None: no cap)."""
        return self._engine.rate

    # ------------------------------------------------------------------ observing

    async def wait_received(self, kind: type[M]) -> M:
        """Wait until a message of type `kind` has been received; return the first one."""
        while True:
            for message in self.received:
                if isinstance(message, kind):
                    return message
            self._arrived = arrived = anyio.Event()
            await arrived.wait()

    async def disconnect(self) -> None:
        """Close every connection this agent serves, as if the agent died."""
        for stream in list(self._streams):
            await stream.aclose()

    # ------------------------------------------------------------------ serving

    async def serve(self, stream: ByteStream, *, peer: Peer | None = None) -> None:
        """Serve one connection until the client closes it (or `disconnect`).

        `peer` is who the operating system says connected (default: this process's user).
        """
        self._streams.add(stream)
        try:
            await serve_connection(stream, self, peer=peer or Peer(uid=os.getuid()))
        finally:
            self._streams.discard(stream)

    # ------------------------------------------------------------------ AgentHandler

    def heard(self, conn: Connection, message: ClientMessage) -> None:
        """Record every message a client sends (see `received`)."""
        self.received.append(message)
        if self._arrived is not None:
            self._arrived.set()

    async def accept(self, conn: Connection) -> Welcome:
        """Welcome any client (after the endpoint's checks)."""
        if not conn.principal.admin:
            self._owner_connections.setdefault(conn.principal.key, set()).add(conn)
        return Welcome(
            protocol=self.protocol,
            agent_version=FAKE_AGENT_VERSION,
            host_id=self.host_id,
            cpus=self.cpus,
            memory=self.memory,
            capabilities=["owners", "pause", "checkpoint", NETWORK_POLICY],
            images=self.images,
            instance=self.instance,
        )

    async def closed(self, conn: Connection) -> None:
        """Like the real local agent: when an owner's last connection ends, its sandboxes go."""
        if conn.principal.admin:
            return
        key = conn.principal.key
        left = self._owner_connections.get(key, set())
        left.discard(conn)
        if left:
            return
        self._owner_connections.pop(key, None)
        for sandbox_id in [k for k, s in self.sandboxes.items() if s.principal == conn.principal]:
            del self.sandboxes[sandbox_id]
        _fake_checkpoint.reap(self, key)

    async def handle(self, conn: Connection, request: Request) -> Reply:
        """Carry out a lifecycle request; anything else is a `BadRequest`."""
        handler = _HANDLERS.get(type(request))
        if handler is None:
            raise BadRequest(f"this fake agent cannot handle {type(request).__name__}")
        return await handler(self, conn, request)

    async def _ping(self, conn: Connection, request: Ping) -> Reply:
        return Pong(id=request.id, time=time.time())

    async def _create_request(self, conn: Connection, request: CreateSandbox) -> Reply:
        info = await self._create(request.sandbox_id, request.spec, conn.principal)
        return SandboxReply(id=request.id, sandbox=info)

    async def _stop(self, conn: Connection, request: StopSandbox) -> Reply:
        sandbox = self._sandbox(request.sandbox_id, conn.principal)
        if sandbox.info.state in ("running", "paused"):  # a paused one is resumed, then stopped
            sandbox.info.state = "exited"
            sandbox.info.exit_code = 137
            await self._tell(sandbox, "stopped", f"stopped at the request of {conn.owner}")
        return SandboxReply(id=request.id, sandbox=_copy(sandbox.info))

    async def _start(self, conn: Connection, request: StartSandbox) -> Reply:
        sandbox = self._sandbox(request.sandbox_id, conn.principal)
        if sandbox.info.state != "running":
            sandbox.info.state = "running"
            sandbox.info.exit_code = None
            await self._tell(sandbox, "running", f"started at the request of {conn.owner}")
        return SandboxReply(id=request.id, sandbox=_copy(sandbox.info))

    async def _remove(self, conn: Connection, request: RemoveSandbox) -> Reply:
        sandbox = self._sandbox(request.sandbox_id, conn.principal)
        del self.sandboxes[request.sandbox_id]
        why = f"removed at the request of {conn.owner}"
        if sandbox.info.state in ("running", "paused"):  # the engine stops it, and says so
            await self._tell(sandbox, "stopped", why)
        await self._tell(sandbox, "deleted", why)
        return Done(id=request.id)

    async def _inspect(self, conn: Connection, request: InspectSandbox) -> Reply:
        info = self._sandbox(request.sandbox_id, conn.principal).info
        return SandboxReply(id=request.id, sandbox=_copy(info))

    async def _list(self, conn: Connection, request: ListSandboxes) -> Reply:
        who = conn.principal
        owner = request.owner if who.admin else who.owner
        infos = [
            _copy(s.info)
            for s in self.sandboxes.values()
            if who.may_act_on(s.principal.uid, s.info.owner)
            and (not owner or s.info.owner == owner)
        ]
        return SandboxListReply(id=request.id, sandboxes=infos)

    async def _tell(self, sandbox: _Sandbox, state: str, reason: str) -> None:
        """Push a change a request made to the sandbox owner's connections that accept it."""
        end = "user" if state != "running" else ""
        change = SandboxChanged(
            sandbox_id=sandbox.info.sandbox_id,
            state=state,
            cause="request",
            reason=reason,
            at=time.time(),
            end=end,
            exit_code=sandbox.info.exit_code,
        )
        await self.push(sandbox, change)

    async def push(self, sandbox: _Sandbox, change: SandboxChanged) -> None:
        """Send `change` to the sandbox owner's connections that accept it."""
        for conn in list(self._owner_connections.get(sandbox.principal.key, ())):
            if "changed" in conn.accepts:
                await conn.send_quietly(change)

    def _sandbox(self, sandbox_id: str, who: Principal) -> _Sandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or not who.may_act_on(sandbox.principal.uid, sandbox.info.owner):
            raise SandboxNotFound(
                f"no sandbox {sandbox_id!r} on host {self.host_id}", sandbox_id=sandbox_id
            )
        return sandbox

    async def _create(self, sandbox_id: str, spec: SandboxSpec, who: Principal) -> SandboxInfo:
        if who.admin:
            raise BadRequest("an administrator's connection owns no sandboxes: it cannot create")
        existing = self._existing(sandbox_id, spec, who)
        if existing is not None:
            return existing
        if spec.image in self.fail_images:
            raise ImageNotFound(
                f"image {spec.image!r} is not on this host and could not be pulled",
                image=spec.image,
            )
        if spec.pull == "never" and spec.image not in self.images:
            raise ImageNotFound(
                f"image {spec.image!r} is not on this host and the pull policy is 'never'",
                image=spec.image,
            )
        start = await self._engine.start(sandbox_id)
        existing = self._existing(sandbox_id, spec, who)  # a concurrent create may have won
        if existing is not None:
            return existing
        info = SandboxInfo(
            sandbox_id=sandbox_id,
            container_id=hashlib.sha256(
                f"{self.host_id}/{next(self._container_ids)}".encode()
            ).hexdigest(),
            image=spec.image,
            state="running",
            owner=who.owner,
            created_at=time.time(),
            labels=dict(spec.labels),
            spec=spec,
            owner_uid=who.uid,
        )
        self.sandboxes[sandbox_id] = _Sandbox(info, spec, who)
        self.starts[sandbox_id] = start
        return _copy(info)

    def _existing(self, sandbox_id: str, spec: SandboxSpec, who: Principal) -> SandboxInfo | None:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None:
            return None
        if sandbox.principal != who:
            raise AlreadyExists(
                f"sandbox id {sandbox_id!r} is taken on host {self.host_id} by another owner: "
                "choose another id",
                sandbox_id=sandbox_id,
            )
        if sandbox.spec != spec:
            raise AlreadyExists(
                f"sandbox {sandbox_id} already exists with a different spec", sandbox_id=sandbox_id
            )
        sandbox.info.state = "running"
        sandbox.info.exit_code = None
        return _copy(sandbox.info)


def _copy(info: SandboxInfo) -> SandboxInfo:
    return SandboxInfo(
        sandbox_id=info.sandbox_id,
        container_id=info.container_id,
        image=info.image,
        state=info.state,
        owner=info.owner,
        created_at=info.created_at,
        labels=dict(info.labels),
        exit_code=info.exit_code,
        sessions=list(info.sessions),
        spec=info.spec,
        owner_uid=info.owner_uid,
    )


_HANDLERS: dict[type[Any], Callable[[FakeAgent, Connection, Any], Awaitable[Reply]]] = {
    Ping: FakeAgent._ping,
    CreateSandbox: _fake_checkpoint.creating(FakeAgent._create_request),
    StopSandbox: FakeAgent._stop,
    StartSandbox: FakeAgent._start,
    RemoveSandbox: FakeAgent._remove,
    InspectSandbox: FakeAgent._inspect,
    ListSandboxes: FakeAgent._list,
    PauseSandbox: _fake_pause.pause,
    ResumeSandbox: _fake_pause.resume,
    **_fake_checkpoint.HANDLERS,
}
FakeAgent.request_kinds = frozenset(_HANDLERS)


class Serves(Protocol):
    """An in-process agent: serves one connection over `stream` until it ends."""

    async def serve(self, stream: ByteStream) -> None: ...


class FakeAgentConnector:
    """Reaches `agent` over a fresh in-memory stream at every connect (a `Connector`).

    `agent` is a `FakeAgent`, or any object that `serve`s a stream (then give its `name`).
    """

    def __init__(self, agent: Serves, name: str | None = None) -> None:
        self.agent = agent
        self._name = name

    @property
    def name(self) -> str:
        """The name given, else ``fake://<host id>``."""
        if self._name is not None:
            return self._name
        return f"fake://{getattr(self.agent, 'host_id', 'agent')}"

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ByteStream]:
        """A stream the agent serves until it is closed (or the agent disconnects)."""
        client, server = memory_stream_pair()
        with unwrap_single_errors():  # what the body raises comes out as itself
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.agent.serve, server)
                try:
                    yield client
                finally:
                    await client.aclose()
                    tg.cancel_scope.cancel()


__all__ = ["FAKE_AGENT_VERSION", "FakeAgent", "FakeAgentConnector"]
