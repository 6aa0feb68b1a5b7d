"""A framed message channel over any byte stream, and credit-based chunk streams.

Both ends of the protocol use this: the core's `AgentConnection` and the agent's server. The
byte stream is a seam (`ByteStream`): a pipe to a local agent, an SSH channel, a unix socket or
an in-memory pair in tests all fit it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from ._errors import TransportError
from ._framing import DEFAULT_MAX_FRAME, FrameDecoder, frame
from ._protocol import Message, StreamData, encode

M = TypeVar("M")

READ_SIZE = 1 << 16
CHUNK_SIZE = 256 << 10
WINDOW = 8  # chunks a stream sender may have in flight before it needs more credit


class ByteStream(Protocol):
    """What a channel needs from a transport: send bytes, receive bytes, close."""

    async def send(self, item: bytes, /) -> None:
        """Send all of `item`."""

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        """Return at least one byte; raise `anyio.EndOfStream` when the peer has closed."""

    async def aclose(self) -> None:
        """Close the stream."""


class SplitStream:
    """Joins a receive stream and a send stream (a process's stdout and stdin) into one."""

    def __init__(self, receive: ByteReceiveStream, send: ByteSendStream) -> None:
        self._receive = receive
        self._send = send

    async def send(self, item: bytes, /) -> None:
        await self._send.send(item)

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        return await self._receive.receive(max_bytes)

    async def aclose(self) -> None:
        try:
            await self._send.aclose()
        finally:
            await self._receive.aclose()


class FramedChannel(Generic[M]):
    """Sends and receives whole messages; writes are serialised so frames never interleave."""

    def __init__(
        self,
        stream: ByteStream,
        decode: Callable[[bytes], M],
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.stream = stream
        self._decode = decode
        self._decoder = FrameDecoder(max_frame)
        self._max_frame = max_frame
        self._pending: list[bytes] = []
        self._write_lock = anyio.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def max_frame(self) -> int:
        """The largest frame either way, in bytes (an agent raises it after the handshake)."""
        return self._max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._max_frame = self._decoder.max_frame = value

    async def send(self, message: Message) -> None:
        """Send one message; a broken stream raises `TransportError`."""
        await self.send_payload(encode(message))

    async def send_payload(self, payload: bytes) -> None:
        """Send one message already encoded (see `encode_request`)."""
        data = frame(payload, self._max_frame)
        async with self._write_lock:
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise TransportError(
                    f"cannot send to peer: {str(exc) or type(exc).__name__}"
                ) from exc
        self.bytes_sent += len(data)

    async def receive(self) -> M | None:
        """Return the next message, or None at a clean end of stream."""
        while not self._pending:
            try:
                data = await self.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return None
            except (anyio.BrokenResourceError, OSError) as exc:
                raise TransportError(
                    f"stream from peer broke: {str(exc) or type(exc).__name__}"
                ) from exc
            if not data:
                return None
            self.bytes_received += len(data)
            self._pending = self._decoder.feed(data)
            self._pending.reverse()
        return self._decode(self._pending.pop())

    async def aclose(self) -> None:
        """Close the underlying stream."""
        await self.stream.aclose()


class CreditGate:
    """The sending side of a chunk stream: wait for credit before each chunk."""

    def __init__(self, initial: int = 0) -> None:
        self._credits = initial
        self._changed = anyio.Event()
        self._failed: BaseException | None = None

    def grant(self, chunks: int) -> None:
        """The receiver allows `chunks` more chunks."""
        self._credits += chunks
        self._changed.set()

    def fail(self, exc: BaseException) -> None:
        """Wake the sender with an error (the peer went away)."""
        self._failed = exc
        self._changed.set()

    async def take(self) -> None:
        """Wait until one chunk may be sent, and count it."""
        while self._credits <= 0:
            if self._failed is not None:
                raise self._failed
            self._changed = anyio.Event()
            await self._changed.wait()
        if self._failed is not None:
            raise self._failed
        self._credits -= 1


async def send_stream(
    send: Callable[[Message], Awaitable[None]],
    gate: CreditGate,
    request_id: int,
    chunks: AsyncIterable[bytes],
) -> int:
    """Send a byte stream as `StreamData` chunks of `CHUNK_SIZE`, one credit each, then its end.

    Returns the number of bytes sent. Both ends use it: the core for uploads, the agent for
    downloads.
    """
    pending = bytearray()
    sent = 0
    async for chunk in chunks:
        pending += chunk
        while len(pending) >= CHUNK_SIZE:
            await gate.take()
            await send(StreamData(id=request_id, data=bytes(pending[:CHUNK_SIZE])))
            sent += CHUNK_SIZE
            del pending[:CHUNK_SIZE]
    if pending:
        await gate.take()
        await send(StreamData(id=request_id, data=bytes(pending)))
        sent += len(pending)
    await send(StreamData(id=request_id, data=b"", end=True))
    return sent
