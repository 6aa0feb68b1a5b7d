"""The agent's side of the protocol, for every agent: the real one and the fakes alike.

`serve_connection` runs one connection against an `AgentHandler`, which only decides what each
request does. Everything about the connection itself lives here once, so no agent can drift.

Rules:
- The handshake comes first: one `Hello` frame of at most `HELLO_MAX_FRAME` bytes within
  `handshake_timeout` seconds. Anything else is answered with an `ErrorReply` (id 0) and the
  connection ends; so does a handler that refuses the client (`AgentHandler.accept` raising).
- After the handshake a connection ends only at end of stream, on a framing violation (a frame
  announced larger than the maximum) or when the handler closes it. A frame that holds no
  valid message is answered on its own request id (0 if it names none) and the rest go on.
- Each request runs in a worker task of the connection with its own cancel scope; `Cancel`
  cancels it. It ends with exactly one final answer: the handler's reply, an `ErrorReply` for
  the `RockError` it raised, or an `InternalError` for anything else (logged with its
  traceback), a cancellation nobody asked for included: it would end the connection
  (`_request_run`, `_request_failure`).
- Nothing raises out of `serve_connection`: a peer that hangs up at any moment, even before
  its answer, only ends its own connection.
- A byte stream the client sends (`StreamData`) goes to the request that opened an inbound
  stream for its id (`Connection.open_inbound`), under credit: a client that sends past the
  credit it was granted fails that request with a `ProtocolError` and nothing else.
- Memory is bounded across all connections of a process by one `ReceiveBudget`
  (`RECEIVE_BUDGET`): bytes of unfinished frames and the payloads of requests in flight, past
  the first `UNCHARGED` (128 KiB) of each, are charged to it. A connection whose frame needs
  room the budget lacks is not read until there is some (the client is paced by its
  transport); after `BUDGET_WAIT` seconds it ends (`ProtocolError`, id 0). Other connections
  go on, and connections that send only small frames never wait.
- A reply too large for a frame is never sent: that request is answered with a `BadRequest`
  naming the limit, and the link goes on.
- `Principal` decides who may act on a sandbox: the owner of the same user (peer uid), or an
  administrator's connection (`Hello.admin`) for every owner of its user, every user for root.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._channel import ByteStream, CreditGate, FramedChannel, ReceiveBudget
from ._errors import (
    ProtocolError,
    RockError,
    TransportError,
)
from ._framing import DEFAULT_MAX_FRAME, UNCHARGED
from ._protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ClientMessage,
    Hello,
    Message,
    Rejected,
    Reply,
    Request,
    StreamCredit,
    StreamData,
    Welcome,
    decode_client_message,
)
from ._request_run import RequestWorkers, error_reply

log = logging.getLogger("rock_core.endpoint")

HELLO_MAX_FRAME = 64 << 10
HANDSHAKE_TIMEOUT = 10.0
SEND_TIMEOUT = 60.0  # a peer that takes nothing for this long is gone
RECEIVE_BUDGET = 256 << 20  # bytes received and held, across a process's connections
_process_budget = ReceiveBudget(RECEIVE_BUDGET)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of a connection, as the operating system says (not the peer)."""

    uid: int
    pid: int | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Principal:
    """Whom a connection acts for: an owner of one user, or that user's administrator."""

    uid: int
    owner: str
    admin: bool = False

    @property
    def key(self) -> str:
        """The owner as an agent keys it: owners of different users never share a key."""
        return f"{self.uid}:{self.owner}"

    def may_act_on(self, owner_uid: int, owner: str) -> bool:
        """True if this connection may see and change a sandbox of `owner` (of `owner_uid`)."""
        if self.admin:
            return self.uid == 0 or owner_uid == self.uid
        return owner_uid == self.uid and owner == self.owner


class Connection:
    """One client's connection, after its handshake: what a handler may use of it."""

    def __init__(
        self,
        channel: FramedChannel[Any],
        hello: Hello,
        peer: Peer,
        budget: ReceiveBudget | None = None,
    ) -> None:
        self.channel = channel
        self.budget = budget or _process_budget  # shared with the process's other connections
        self.hello = hello
        self.peer = peer
        self.principal = Principal(peer.uid, hello.owner, hello.admin)
        self.owner = hello.owner
        self.accepts = frozenset(hello.accepts)  # unasked messages it understands
        # When this connection last said anything, on the runtime's clock (as all the core's
        # time): on the agent's asyncio loop that is `time.monotonic()`, as its leases use.
        self.last_seen = anyio.current_time()
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._inbound: dict[int, MemoryObjectSendStream[bytes | None]] = {}
        self._gates: dict[int, CreditGate] = {}
        self._violations: dict[int, RockError] = {}
        self._held: dict[int, int] = {}  # bytes of the budget each request in flight holds
        self._scope: anyio.CancelScope | None = None

    async def send(self, message: Message) -> None:
        """Send a message; `TransportError` if the peer is gone (the connection then ends)."""
        if self.channel.try_send(message):  # it took it at once: no timer was needed
            return
        try:
            with anyio.fail_after(SEND_TIMEOUT):
                await self.channel.send(message)
        except TimeoutError as exc:
            self.close()
            raise TransportError(f"the client took nothing for {SEND_TIMEOUT:g} s") from exc
        except TransportError:
            self.close()
            raise

    async def send_quietly(self, message: Message) -> None:
        """Send a message if the peer is still there; nobody waits for it otherwise."""
        with contextlib.suppress(TransportError):
            await self.send(message)

    def close(self) -> None:
        """End the connection (its requests are cancelled)."""
        if self._scope is not None:
            self._scope.cancel()

    def gate(self, request_id: int) -> CreditGate:
        """The credit gate of the stream a request sends (made on first use by either side)."""
        gate = self._gates.get(request_id)
        if gate is None:
            gate = self._gates[request_id] = CreditGate()
        return gate

    def open_inbound(self, request_id: int, window: int) -> MemoryObjectReceiveStream[bytes | None]:
        """The chunks the client sends under `request_id` (None marks its end).

        The handler grants the client at most `window` chunks ahead of what it has taken; a
        client that sends more fails the request.
        """
        send, receive = anyio.create_memory_object_stream[bytes | None](window)
        self._inbound[request_id] = send
        return receive

    def _deliver(self, message: StreamData) -> None:
        inbound = self._inbound.get(message.id)
        if inbound is None:
            if message.id in self._scopes:  # in flight, but it granted no credit
                self._fail(message.id, ProtocolError("the client sent stream data without credit"))
            return  # else a late chunk of a request that ended: nothing waits for it
        try:
            inbound.send_nowait(None if message.end else message.data)
        except anyio.WouldBlock:
            self._fail(
                message.id, ProtocolError("the client sent stream data past the credit granted")
            )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _fail(self, request_id: int, error: RockError) -> None:
        scope = self._scopes.get(request_id)
        if scope is not None:
            self._violations.setdefault(request_id, error)
            scope.cancel()

    def _hold(self, request_id: int, size: int) -> None:
        """A request received whole holds its payload (past `UNCHARGED`) until it ends (its
        task always runs its `finally`, even when cancelled before it started: see anyio)."""
        held = self._held[request_id] = max(0, size - UNCHARGED)
        self.budget.charge(held)

    def _finish(self, request_id: int) -> RockError | None:
        self.budget.give(self._held.pop(request_id, 0))
        self._scopes.pop(request_id, None)
        self._gates.pop(request_id, None)
        inbound = self._inbound.pop(request_id, None)
        if inbound is not None:
            inbound.close()
        return self._violations.pop(request_id, None)

    @property
    def requests(self) -> int:
        """Requests in flight on this connection."""
        return len(self._scopes)


class AgentHandler(Protocol):
    """What an agent decides; the endpoint does the rest."""

    version: str  # the agent's version, for messages

    async def accept(self, conn: Connection) -> Welcome:
        """The answer to a client's `Hello`; raise a `RockError` to refuse the client."""

    async def handle(self, conn: Connection, request: Request) -> Reply:
        """Carry out one request and return its reply (or raise a `RockError`)."""

    def heard(self, conn: Connection, message: ClientMessage) -> None:
        """The client said something (called for every message, before it is acted on)."""

    async def closed(self, conn: Connection) -> None:
        """The connection of an accepted client ended (called shielded, exactly once)."""


async def serve_connection(
    stream: ByteStream,
    handler: AgentHandler,
    *,
    peer: Peer,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    max_frame: int = DEFAULT_MAX_FRAME,
    budget: ReceiveBudget | None = None,
) -> None:
    """Serve one connection until it ends; never raises (but cancellation).

    `budget` bounds what all connections sharing it hold (see the module rules); by default
    every connection of this process shares one of `RECEIVE_BUDGET` bytes.
    """
    budget = budget or _process_budget
    channel: FramedChannel[ClientMessage | Rejected] = FramedChannel(
        stream, decode_client_message, max_frame=HELLO_MAX_FRAME, budget=budget
    )
    try:
        hello = await _handshake(channel, handshake_timeout, handler.version)
        if hello is None:
            return
        conn = Connection(channel, hello, peer, budget)
        handler.heard(conn, hello)
        try:
            welcome = await handler.accept(conn)
        except RockError as exc:
            await _send_quietly(channel, error_reply(0, exc))
            return
        channel.max_frame = max_frame
        try:
            async with anyio.create_task_group() as tg:
                conn._scope = tg.cancel_scope
                try:
                    await conn.send(welcome)
                except TransportError:
                    return
                await _read_loop(conn, handler, tg)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await handler.closed(conn)
                except Exception:
                    log.exception("cleaning up after a connection failed")
    except Exception:
        log.exception("serving a connection failed")  # a bug, but it must not stop the agent
    finally:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await channel.aclose()  # the peer sees end-of-stream; the socket is freed


async def _handshake(
    channel: FramedChannel[ClientMessage | Rejected], timeout: float, version: str
) -> Hello | None:
    first: ClientMessage | Rejected | None = None
    try:
        with anyio.move_on_after(timeout) as waited:
            first = await channel.receive()
    except RockError as exc:
        await _send_quietly(channel, error_reply(0, exc))
        return None
    if waited.cancelled_caught:
        log.info("closing a connection that sent no hello within %g s", timeout)
        return None
    if first is None:
        return None
    error: RockError | None = None
    if isinstance(first, Rejected):
        error = first.error
    elif not isinstance(first, Hello):
        error = ProtocolError(f"expected hello first, got {first.__struct_config__.tag!r}")
    elif first.protocol != PROTOCOL_VERSION:
        error = ProtocolError(
            f"client speaks protocol {first.protocol}; agent {version} speaks {PROTOCOL_VERSION}"
        )
    if error is not None:
        await _send_quietly(channel, error_reply(0, error))
        return None
    assert isinstance(first, Hello)
    return first


async def _read_loop(conn: Connection, handler: AgentHandler, tg: TaskGroup) -> None:
    channel = conn.channel
    workers = RequestWorkers(tg, conn, handler)  # each request runs in one (`_request_run`)
    while True:
        try:
            message = await channel.receive()
        except ProtocolError as exc:  # a framing violation: the stream cannot be trusted
            log.warning("closing a connection that broke the framing: %s", exc)
            await conn.send_quietly(error_reply(0, exc))
            return
        except TransportError:
            return
        if message is None:
            return
        conn.last_seen = anyio.current_time()
        if isinstance(message, Rejected):
            request_id = 0 if message.id in conn._scopes else message.id
            await conn.send_quietly(error_reply(request_id, message.error))
            continue
        handler.heard(conn, message)
        if isinstance(message, StreamData):
            conn._deliver(message)
        elif isinstance(message, StreamCredit):
            # Credit may arrive before the handler that sends the stream has started.
            if message.id in conn._scopes:
                conn.gate(message.id).grant(message.chunks)
        elif isinstance(message, Cancel):
            scope = conn._scopes.get(message.target)
            if scope is not None:
                scope.cancel()
        elif isinstance(message, Hello):
            await conn.send_quietly(error_reply(0, ProtocolError("second hello")))
        elif message.id in conn._scopes:
            await conn.send_quietly(
                error_reply(
                    0, ProtocolError(f"request id {message.id} is already in use on this link")
                )
            )
        else:
            conn._hold(message.id, channel.last_size)
            scope = conn._scopes[message.id] = anyio.CancelScope()
            workers.submit(message, scope)


async def _send_quietly(channel: FramedChannel[Any], message: Message) -> None:
    with contextlib.suppress(Exception), anyio.move_on_after(SEND_TIMEOUT):
        await channel.send(message)


__all__ = [
    "AgentHandler",
    "Connection",
    "Peer",
    "Principal",
    "serve_connection",
]
