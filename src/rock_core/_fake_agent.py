"""In-memory stand-ins for an agent and its transport, with no Docker and no processes.

Rules:
- `FakeAgent` speaks the agent protocol over any `ByteStream` for the sandbox lifecycle:
  handshake, ping, create, stop, start, remove, inspect and list. It mirrors the real agent's
  answers (idempotent create, `AlreadyExists` on a different spec, `SandboxNotFound` for
  unknown ids, `ProtocolError` on a version mismatch) and answers anything else with
  `BadRequest`.
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
import math
import os
import time
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

import anyio

from ._channel import ByteStream
from ._connection import unwrap_single_errors
from ._endpoint import Connection, Peer, Principal, serve_connection
from ._errors import (
    AlreadyExists,
    BadRequest,
    ImageNotFound,
    SandboxNotFound,
)
from ._fake_latency import FakeStart, LatencyDistribution, StartLatency
from ._memory import memory_stream_pair
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
    fail with `ImageNotFound`.

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
        if engine_rate is not None and not (math.isfinite(engine_rate) and engine_rate > 0):
            raise BadRequest(
                f"engine_rate must be a positive number of creates per second, got {engine_rate}"
            )
        self.host_id = host_id
        self.cpus = cpus
        self.memory = memory
        self.images = sorted(images)
        self.protocol = protocol
        self.start_latency = start_latency
        self.fail_images = frozenset(fail_images)
        self.engine_rate = engine_rate
        self.starts: dict[str, FakeStart] = {}
        self.sandboxes: dict[str, _Sandbox] = {}
        self.received: list[ClientMessage] = []
        self._arrived: anyio.Event | None = None  # made lazily: needs a running event loop
        self._streams: set[ByteStream] = set()
        self._owner_connections: dict[str, int] = {}
        self._container_ids = itertools.count(1)
        self._engine_next = -math.inf  # anyio clock time of the engine's next free turn

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
        key = conn.principal.key
        self._owner_connections[key] = self._owner_connections.get(key, 0) + 1
        return Welcome(
            protocol=self.protocol,
            agent_version=FAKE_AGENT_VERSION,
            host_id=self.host_id,
            cpus=self.cpus,
            memory=self.memory,
            capabilities=["owners"],
            images=self.images,
        )

    async def closed(self, conn: Connection) -> None:
        """Like the real local agent: when an owner's last connection ends, its sandboxes go."""
        key = conn.principal.key
        left = self._owner_connections.get(key, 1) - 1
        if left > 0:
            self._owner_connections[key] = left
            return
        self._owner_connections.pop(key, None)
        for sandbox_id in [k for k, s in self.sandboxes.items() if s.principal == conn.principal]:
            del self.sandboxes[sandbox_id]

    async def handle(self, conn: Connection, request: Request) -> Reply:
        """Carry out a lifecycle request; anything else is a `BadRequest`."""
        who = conn.principal
        if isinstance(request, Ping):
            return Pong(id=request.id, time=time.time())
        if isinstance(request, CreateSandbox):
            info = await self._create(request.sandbox_id, request.spec, who)
            return SandboxReply(id=request.id, sandbox=info)
        if isinstance(request, StopSandbox):
            sandbox = self._sandbox(request.sandbox_id, who)
            sandbox.info.state = "exited"
            sandbox.info.exit_code = 137
            return SandboxReply(id=request.id, sandbox=_copy(sandbox.info))
        if isinstance(request, StartSandbox):
            sandbox = self._sandbox(request.sandbox_id, who)
            sandbox.info.state = "running"
            sandbox.info.exit_code = None
            return SandboxReply(id=request.id, sandbox=_copy(sandbox.info))
        if isinstance(request, RemoveSandbox):
            self._sandbox(request.sandbox_id, who)
            del self.sandboxes[request.sandbox_id]
            return Done(id=request.id)
        if isinstance(request, InspectSandbox):
            return SandboxReply(
                id=request.id, sandbox=_copy(self._sandbox(request.sandbox_id, who).info)
            )
        if isinstance(request, ListSandboxes):
            owner = request.owner if who.admin else who.owner
            infos = [
                _copy(s.info)
                for s in self.sandboxes.values()
                if who.may_act_on(s.principal.uid, s.info.owner)
                and (not owner or s.info.owner == owner)
            ]
            return SandboxListReply(id=request.id, sandboxes=infos)
        raise BadRequest(f"this fake agent cannot handle {type(request).__name__}")

    def _sandbox(self, sandbox_id: str, who: Principal) -> _Sandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or not who.may_act_on(sandbox.principal.uid, sandbox.info.owner):
            raise SandboxNotFound(f"no sandbox {sandbox_id!r} on host {self.host_id}")
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
        start = await self._start_delay(sandbox_id)
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
        )
        self.sandboxes[sandbox_id] = _Sandbox(info, spec, who)
        self.starts[sandbox_id] = start
        return _copy(info)

    async def _start_delay(self, sandbox_id: str) -> FakeStart:
        """Wait for the engine's turn, then the start latency; return how the time went."""
        latency = self.start_latency
        began = anyio.current_time()
        if not latency and self.engine_rate is None:
            return FakeStart(began, engine_wait=0.0, latency=0.0, slept=0.0)  # no checkpoint
        engine_wait = 0.0
        if self.engine_rate is not None:
            turn = max(began, self._engine_next)
            self._engine_next = turn + 1 / self.engine_rate
            engine_wait = turn - began
        if isinstance(latency, LatencyDistribution):
            drawn = latency.sample(sandbox_id)
        elif callable(latency):
            if engine_wait:
                await anyio.sleep_until(began + engine_wait)
            called = anyio.current_time()
            await latency(sandbox_id)
            ended = anyio.current_time()
            return FakeStart(began, engine_wait, latency=ended - called, slept=ended - began)
        else:
            drawn = latency or 0.0
        await anyio.sleep_until(began + engine_wait + drawn)
        return FakeStart(began, engine_wait, latency=drawn, slept=anyio.current_time() - began)

    def _existing(self, sandbox_id: str, spec: SandboxSpec, who: Principal) -> SandboxInfo | None:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None:
            return None
        if sandbox.principal != who:
            raise AlreadyExists(
                f"sandbox id {sandbox_id!r} is taken on host {self.host_id} by another owner",
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
    )


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
