"""Port forwarding, caller side: a local listener whose connections lead into a sandbox.

`open_port_forward` listens on a local address (loopback by default). Each connection accepted
there becomes one `ForwardPort` request on the agent link, and its bytes travel both ways as
credit-controlled `StreamData` (see `rock_agent._ports` for the agent's half). Over SSH the link
is the SSH channel the cluster already uses: no port is opened on the sandbox's host.

Rules:
- The agent link is looked up again for every accepted connection (the forward takes a
  resolver such as ``lambda: cluster.connection(sandbox_id)``), so a forward outlives a broken
  link: connections made while the host is away fail with `HostUnavailable`, and those made
  after the cluster reconnected use the new link.
- A connection that fails (nothing listens inside, the sandbox stopped, the link broke or is
  down) is reset for the local client, and the error is kept in `PortForward.errors` and given
  to `on_error`.
- A local client that closes its sending side half-closes the connection inside, and the
  other way round; the forward of a connection ends when both sides are done.
- Forwarding never touches a sandbox's owner or lifetime: it only reads and writes bytes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
from anyio.abc import SocketAttribute, SocketStream

from ._channel import CHUNK_SIZE, WINDOW, CreditGate
from ._connection import AgentConnection, RequestStream, raise_for_reply
from ._errors import BadRequest, RockError, SandboxNotFound, TransportError
from ._protocol import (
    ClaimConnection,
    ForwardPort,
    ForwardReply,
    InspectSandbox,
    Reply,
    SandboxInfo,
    SandboxReply,
    StreamData,
)

_LOCAL_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

log = logging.getLogger("rock_core.ports")


class PortForward(tuple[str, int]):
    """The local ``(host, port)`` leading to a port in a sandbox, with what went through it."""

    sandbox_id: str
    remote_port: int
    connections: int
    active: int
    bytes_in: int
    bytes_out: int
    errors: list[RockError]

    def __new__(cls, host: str, port: int, sandbox_id: str, remote_port: int) -> PortForward:
        forward = super().__new__(cls, (host, port))
        forward.sandbox_id = sandbox_id
        forward.remote_port = remote_port
        forward.connections = 0  # accepted so far
        forward.active = 0  # open now
        forward.bytes_in = 0  # carried into the sandbox
        forward.bytes_out = 0  # carried out of it
        forward.errors = []  # one per connection that failed
        return forward

    @property
    def host(self) -> str:
        """The local address to connect to."""
        return self[0]

    @property
    def port(self) -> int:
        """The local port to connect to."""
        return self[1]

    @property
    def url(self) -> str:
        """``http://host:port`` (a convenience for HTTP servers)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"<PortForward {self.host}:{self.port} -> {self.sandbox_id}:{self.remote_port} "
            f"connections={self.connections} errors={len(self.errors)}>"
        )


class Traffic(Protocol):
    """Where a carried connection counts its bytes (a `PortForward`, a `HostPort`)."""

    bytes_in: int  # carried into the sandbox
    bytes_out: int  # carried out of it


class HostLink(Protocol):
    """What a cluster's host offers here: its live agent connection."""

    def link(self) -> AgentConnection:
        """The live connection; raises `HostUnavailable` while the link is down."""


async def locate_sandbox(
    hosts: Mapping[str, HostLink], sandbox_id: str
) -> tuple[AgentConnection, SandboxInfo]:
    """The link to the agent holding `sandbox_id`, whoever owns it, and the agent's view of it."""
    unreachable: list[str] = []
    for host_id, host in hosts.items():
        try:
            conn = host.link()
            reply = await conn.call(InspectSandbox(sandbox_id=sandbox_id), SandboxReply)
        except SandboxNotFound:
            continue
        except TransportError:
            unreachable.append(host_id)
            continue
        return conn, reply.sandbox
    why = f" (hosts not reachable now: {', '.join(unreachable)})" if unreachable else ""
    raise SandboxNotFound(f"no sandbox {sandbox_id!r} on any host{why}", sandbox_id=sandbox_id)


#: The agent link of a forward: a fixed connection, or a resolver called per local connection.
LinkSource = AgentConnection | Callable[[], AgentConnection]


@asynccontextmanager
async def open_port_forward(
    link: LinkSource,
    sandbox_id: str,
    port: int,
    *,
    local_host: str = "127.0.0.1",
    local_port: int = 0,
    address: str = "127.0.0.1",
    on_error: Callable[[RockError], object] | None = None,
) -> AsyncIterator[PortForward]:
    """Listen on `local_host:local_port` (0: any free port) and carry each connection to `port`.

    `link` is the agent connection, or better a resolver returning the live one (raising
    `HostUnavailable` while the link is down): it is called once per accepted connection, so
    the forward keeps working across reconnects. `address` is where the agent connects, as
    seen from inside the sandbox. The sandbox must be running when the forward opens; it is
    checked once, and each connection reports its own errors afterwards.
    """
    resolve = _resolver(link)
    if not 1 <= port <= 65535:
        raise BadRequest(f"port must be between 1 and 65535, got {port}")
    try:
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise BadRequest(f"address {address!r} is not an IP address") from exc
    conn = resolve()
    info = (await conn.call(InspectSandbox(sandbox_id=sandbox_id), SandboxReply)).sandbox
    if info.state not in ("running", "paused"):  # a paused one is resumed on use
        raise BadRequest(
            f"sandbox {sandbox_id} is {info.state}, not running: cannot forward port {port}",
            sandbox_id=sandbox_id,
        )
    try:
        listener = await anyio.create_tcp_listener(
            local_host=local_host, local_port=local_port, reuse_port=False
        )
    except OSError as exc:
        raise BadRequest(
            f"cannot listen on {local_host}:{local_port}: {exc.strerror or exc}"
        ) from exc
    bound = listener.listeners[0].extra(SocketAttribute.local_address)
    forward = PortForward(str(bound[0]), int(bound[1]), sandbox_id, port)

    async def serve(local: SocketStream) -> None:
        forward.connections += 1
        forward.active += 1
        try:
            await _carry(resolve, forward, address, local, on_error)
        finally:
            forward.active -= 1

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve, tg)
        try:
            yield forward
        finally:
            tg.cancel_scope.cancel()


def _resolver(link: LinkSource) -> Callable[[], AgentConnection]:
    if isinstance(link, AgentConnection):
        return lambda: link
    return link


async def _carry(
    resolve: Callable[[], AgentConnection],
    forward: PortForward,
    address: str,
    local: SocketStream,
    on_error: Callable[[RockError], object] | None,
) -> None:
    """Carry one local connection; a failure resets it and is recorded, never raised."""
    failure: RockError | None = None
    async with local:
        try:
            conn = resolve()  # the link live now: it may have been replaced since the last one
            request = ForwardPort(
                sandbox_id=forward.sandbox_id,
                port=forward.remote_port,
                address=address,
            )
            await exchange(conn, request, forward, local)
        except RockError as exc:
            failure = exc
            forward.errors.append(exc)
        if failure is not None:
            reset(local)
    if failure is not None:
        report(on_error, failure)


def report(on_error: Callable[[RockError], object] | None, error: RockError) -> None:
    """Give a connection's error to the caller's callback; a callback that raises is logged,
    and ends neither the forward nor its other connections."""
    if on_error is None:
        return
    try:
        on_error(error)
    except Exception:
        log.exception("the on_error callback raised on %s", error)


async def exchange(
    conn: AgentConnection,
    request: ForwardPort | ClaimConnection,
    forward: Traffic,
    local: SocketStream,
) -> None:
    """Carry `local` both ways as the stream of one `ForwardPort` (or `ClaimConnection`)
    request; raise its error, or return when it is done."""
    failures: list[RockError] = []
    reply: Reply | None = None
    async with conn.open_request(request) as answers:
        gate = conn.gate(request.id)
        async with anyio.create_task_group() as tg:

            async def upstream() -> None:
                try:
                    await _local_to_agent(conn, gate, request.id, local, forward)
                except RockError as exc:
                    failures.append(exc)
                    tg.cancel_scope.cancel()
                except _LOCAL_GONE:
                    tg.cancel_scope.cancel()  # the local client left: cancel inside too

            tg.start_soon(upstream)
            await conn.grant(request.id, WINDOW)
            try:
                reply = await _agent_to_local(conn, answers, request.id, local, forward)
            except RockError as exc:
                failures.append(exc)
            except _LOCAL_GONE:
                pass
            tg.cancel_scope.cancel()
    if failures:
        raise failures[0]
    if reply is not None:
        raise_for_reply(reply, ForwardReply, request)


async def _local_to_agent(
    conn: AgentConnection,
    gate: CreditGate,
    request_id: int,
    local: SocketStream,
    forward: Traffic,
) -> None:
    while True:
        try:
            data = await local.receive(CHUNK_SIZE)
        except anyio.EndOfStream:
            # The end takes a credit too: the agent only reads this stream once connected.
            await gate.take()
            await conn.send(StreamData(id=request_id, data=b"", end=True))
            return
        await gate.take()
        await conn.send(StreamData(id=request_id, data=data))
        forward.bytes_in += len(data)


async def _agent_to_local(
    conn: AgentConnection,
    answers: RequestStream,
    request_id: int,
    local: SocketStream,
    forward: Traffic,
) -> Reply | None:
    async for message in answers:
        if isinstance(message, StreamData):
            if message.end:
                with contextlib.suppress(*_LOCAL_GONE):
                    await local.send_eof()
                continue
            await local.send(message.data)
            forward.bytes_out += len(message.data)
            await conn.grant(request_id, 1)
        elif isinstance(message, Reply):
            return message
    return None


def reset(local: SocketStream) -> None:
    """Make the coming close a reset, so the local client sees a failure, not a clean end."""
    with contextlib.suppress(OSError):
        sock = local.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
