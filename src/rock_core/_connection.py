"""The core's side of one agent link: requests, replies, streamed events, over a framed channel.

`open_agent_connection` owns a reader task that routes every incoming message to the request
it belongs to. A request whose caller is cancelled sends `Cancel` to the agent, so work on the
host stops too. When the link breaks, every waiting request fails with `TransportError`.
Messages the agent sends unasked (`SandboxChanged`) go to the `on_event` callback, if one is
installed (the cluster installs one); it runs in the reader task and must not block.

Rules:
- The connection assigns every request's id as it sends it (`open_request`, `call`): call sites
  build requests without one, and read `request.id` afterwards when they need it (to stream
  chunks or grant credit under it). Ids are unique on the connection, starting at 1.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._channel import WINDOW, ByteStream, CreditGate, FramedChannel, send_stream
from ._errors import BadRequest, ProtocolError, RockError, TransportError, error_from_code
from ._inbox import Inbox
from ._protocol import (
    PROTOCOL_VERSION,
    AgentMessage,
    Cancel,
    ErrorReply,
    Hello,
    Message,
    Reply,
    Request,
    SandboxChanged,
    StreamCredit,
    Welcome,
    decode_agent_message,
    encode_request,
)

log = logging.getLogger("rock_core.connection")

R = TypeVar("R", bound=Reply)

_Inbox = Inbox[AgentMessage]


class AgentConnection:
    """A handshaken link to one agent. Create it with `open_agent_connection`."""

    def __init__(self, channel: FramedChannel[AgentMessage], welcome: Welcome, name: str) -> None:
        self.name = name
        self.welcome = welcome
        self._channel = channel
        self._ids = itertools.count(1)
        self._inboxes: dict[int, _Inbox] = {}
        self._gates: dict[int, CreditGate] = {}
        self._broken: TransportError | None = None
        self._closed = anyio.Event()
        # Called with each `SandboxChanged` the agent sends unasked; must not block or raise.
        self.on_event: Callable[[SandboxChanged], None] | None = None

    @property
    def closed(self) -> bool:
        """True once the link is broken or closed."""
        return self._broken is not None

    async def wait_closed(self) -> None:
        """Return once the link is broken or closed."""
        await self._closed.wait()

    def next_id(self) -> int:
        """Allocate a request id (`open_request` does it for every request it sends)."""
        return next(self._ids)

    def require(self, capability: str, what: str) -> None:
        """`BadRequest` unless the agent announced `capability` (an older agent would take the
        request it cannot decode for garbage and drop the whole link)."""
        welcome = self.welcome
        if capability not in welcome.capabilities:
            raise BadRequest(
                f"the agent of host {welcome.host_id} (version {welcome.agent_version}) cannot "
                f"{what}: upgrade rock-agent there"
            )

    async def call(self, request: Request, expect: type[R]) -> R:
        """Send `request`, ignore any events, and return its reply of type `expect`."""
        async with self.open_request(request) as events:
            async for message in events:
                if isinstance(message, Reply):
                    return raise_for_reply(message, expect, request)
        raise self._lost()

    def _lost(self) -> TransportError:
        return self._broken or TransportError(f"connection to agent {self.name} is closed")

    @asynccontextmanager
    async def open_request(self, request: Request) -> AsyncIterator[RequestStream]:
        """Send `request` and yield the stream of messages answering it (events, then the reply).

        The request gets this connection's next id (set on `request.id`), whatever it held.
        Leaving the block before the reply arrives cancels the request on the agent.
        """
        if self._broken is not None:
            raise self._broken
        request.id = request_id = self.next_id()
        payload = encode_request(request)  # a value the agent would refuse never leaves
        inbox = self._inboxes[request_id] = _Inbox()  # unbounded: see `_inbox`
        stream = RequestStream(inbox, self)
        try:
            # A cancelled caller sends nothing; else the request goes at once if the stream
            # has room (no lock, no trip through the event loop), or waits its turn.
            await anyio.lowlevel.checkpoint_if_cancelled()
            if not self._channel.try_send_payload(payload):
                await self._channel.send_payload(payload)
            yield stream
        finally:
            self._inboxes.pop(request_id, None)
            self._gates.pop(request_id, None)
            inbox.close()
            if not stream.replied:
                await self.cancel(request_id)

    async def send(self, message: Message) -> None:
        """Send a message that is not a request (stream data, credit, cancel)."""
        if self._broken is not None:
            raise self._broken
        await self._channel.send(message)

    async def cancel(self, request_id: int) -> None:
        """Ask the agent to abandon a request (best effort)."""
        if self._broken is None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await self._channel.send(Cancel(id=self.next_id(), target=request_id))
                except TransportError:
                    pass

    # -------------------------------------------------------------- upload side of a stream

    def gate(self, request_id: int) -> CreditGate:
        """The credit gate for chunks this side sends under `request_id`."""
        gate = self._gates.get(request_id)
        if gate is None:
            gate = self._gates[request_id] = CreditGate()
        return gate

    async def send_chunks(self, request_id: int, chunks: AsyncIterator[bytes]) -> int:
        """Send a byte stream under `request_id`, obeying the agent's credit; return its size."""
        return await send_stream(self.send, self.gate(request_id), request_id, chunks)

    async def grant(self, request_id: int, chunks: int = WINDOW) -> None:
        """Allow the agent to send `chunks` more chunks of a download."""
        await self.send(StreamCredit(id=request_id, chunks=chunks))

    # -------------------------------------------------------------- reader

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self._channel.receive()
                if message is None:
                    raise TransportError(f"agent {self.name} closed the connection")
                self._route(message)
        except RockError as exc:
            broken = exc if isinstance(exc, TransportError) else TransportError(str(exc))
            self._fail_all(broken)
        except anyio.get_cancelled_exc_class():
            self._fail_all(TransportError(f"connection to agent {self.name} was closed"))
            raise

    def _route(self, message: AgentMessage) -> None:
        if isinstance(message, StreamCredit):
            # Credit for a request that has ended is late: no gate is made for it.
            if message.id in self._inboxes:
                self.gate(message.id).grant(message.chunks)
            return
        if isinstance(message, Welcome):
            return  # only valid as the first message; a late one answers nothing
        if isinstance(message, SandboxChanged):
            if self.on_event is not None:
                try:
                    self.on_event(message)
                except Exception:
                    # A bug in the handler must not break the link for every request on it.
                    log.exception("handling %r from agent %s failed", message, self.name)
            return
        request_id = message.id
        inbox = self._inboxes.get(request_id)
        if inbox is None:
            # A late event for a request the caller already left: nothing waits for it.
            return
        inbox.put(message)

    def _fail_all(self, exc: TransportError) -> None:
        if self._broken is None:
            self._broken = exc
        self._closed.set()
        for gate in self._gates.values():
            gate.fail(exc)
        for inbox in self._inboxes.values():
            inbox.close()
        self._inboxes.clear()


class RequestStream:
    """The messages answering one request: events in order, then exactly one reply."""

    def __init__(self, inbox: _Inbox, conn: AgentConnection):
        self._inbox = inbox
        self._conn = conn
        self.replied = False

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> AgentMessage:
        if self.replied:
            raise StopAsyncIteration
        message = await self._inbox.get()
        if message is None:
            raise self._conn._lost()
        if isinstance(message, Reply):
            self.replied = True
        return message


def raise_for_reply(message: Reply, expect: type[R], request: Request) -> R:
    """Turn a final message into the expected reply, or raise the error it carries."""
    if isinstance(message, ErrorReply):
        raise error_from_code(message.code, message.message, message.details)
    if not isinstance(message, expect):
        raise ProtocolError(
            f"agent answered {type(request).__name__} with {type(message).__name__}, "
            f"expected {expect.__name__}"
        )
    return message


@asynccontextmanager
async def open_agent_connection(
    stream: ByteStream,
    *,
    owner: str,
    name: str = "agent",
    client: str = "rock_core",
    handshake_timeout: float = 30.0,
    on_close: Callable[[], Any] | None = None,
    lease: float = 0.0,
    admin: bool = False,
) -> AsyncIterator[AgentConnection]:
    """Handshake with an agent over `stream` and keep the link served until the block ends.

    With `admin`, the connection is an administrator's (see `Hello.admin`).
    """
    channel: FramedChannel[AgentMessage] = FramedChannel(stream, decode_agent_message)
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        client=client,
        owner=owner,
        lease=lease,
        accepts=["changed"],
        admin=admin,
    )
    try:
        payload = encode_request(hello)
        with anyio.fail_after(handshake_timeout):
            await channel.send_payload(payload)
            first = await channel.receive()
    except TimeoutError as exc:
        await _close_quietly(channel)
        raise TransportError(
            f"agent {name} did not answer the handshake within {handshake_timeout:g} s"
        ) from exc
    except RockError:
        await _close_quietly(channel)
        raise
    if first is None:
        await _close_quietly(channel)
        raise TransportError(f"agent {name} closed the connection during the handshake")
    if isinstance(first, ErrorReply):
        await _close_quietly(channel)
        raise error_from_code(first.code, first.message, first.details)
    if not isinstance(first, Welcome):
        await _close_quietly(channel)
        raise ProtocolError(f"agent {name} opened with {type(first).__name__}, not a welcome")
    if first.protocol != PROTOCOL_VERSION:
        await _close_quietly(channel)
        raise ProtocolError(
            f"agent {name} speaks protocol {first.protocol}; this core speaks {PROTOCOL_VERSION}"
        )
    connection = AgentConnection(channel, first, name)
    try:
        # The reader never raises, so an error here is the caller's own: give it back as it
        # was raised, not wrapped in a group.
        with unwrap_single_errors():
            async with anyio.create_task_group() as tg:
                tg.start_soon(connection._read_loop)
                try:
                    yield connection
                finally:
                    tg.cancel_scope.cancel()
    finally:
        await _close_quietly(channel)
        if on_close is not None:
            on_close()


@contextmanager
def unwrap_single_errors() -> Iterator[None]:
    """Re-raise a task group's lone exception as itself, not inside an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise


async def _close_quietly(channel: FramedChannel[Any]) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await channel.aclose()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.debug("closing the agent stream failed", exc_info=True)
