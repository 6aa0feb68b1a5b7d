"""A framed message channel over any byte stream, and credit-based chunk streams.

Both ends of the protocol use this: the core's `AgentConnection` and the agent's server. The
byte stream is a seam (`ByteStream`): a pipe to a local agent, an SSH channel, a unix socket or
an in-memory pair in tests all fit it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from ._errors import ProtocolError, TransportError
from ._framing import DEFAULT_MAX_FRAME, FrameDecoder, check_size, frame, size_text
from ._protocol import Message, StreamData, encode
from ._stream_head import stream_data_head

M = TypeVar("M")

READ_SIZE = 1 << 16
MAX_READ = (1 << 20) + (64 << 10)  # the most one read takes: the rest of a frame in progress
CHUNK_SIZE = 256 << 10
BULK_CHUNK = 1 << 20  # the chunks of `send_stream` (files, archives): the most `StreamData` holds
WINDOW = 8  # chunks a stream sender may have in flight before it needs more credit
SPLIT_SEND = 64 << 10  # stream data from this size is written after its header, not copied
BUDGET_WAIT = 60.0  # seconds a reader waits for room in its budget before it gives up


class ByteStream(Protocol):
    """What a channel needs from a transport: send bytes, receive bytes, close."""

    async def send(self, item: bytes, /) -> None:
        """Send all of `item`."""

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        """Return at least one byte; raise `anyio.EndOfStream` when the peer has closed."""

    async def aclose(self) -> None:
        """Close the stream."""


@runtime_checkable
class NowaitSend(Protocol):
    """A stream that can take bytes without waiting when it has room (the agent's stdio)."""

    def send_nowait(self, item: bytes, /) -> bool:
        """Take all of `item` now if that needs no wait (True), else take none of it (False)."""


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


class ReceiveBudget:
    """Bytes received and held, shared by many channels (an agent's connections).

    Each channel charges the unfinished frame it holds (see `_framing`) and waits, without
    reading, while the budget has no room: the peer is paced by its own transport. A peer that
    waits `BUDGET_WAIT` seconds is dropped. `charge` counts what must be held whatever the room
    (a request received whole, until it ends).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.held = 0
        self._waiters: list[anyio.Event] = []

    def take(self, n: int) -> bool:
        """Count `n` more bytes held; False (and nothing counted) if that would pass the size."""
        if self.held + n > self.size:
            return False
        self.held += n
        return True

    def charge(self, n: int) -> None:
        """Count `n` more bytes held, room or not."""
        self.held += n

    def give(self, n: int) -> None:
        """`n` bytes counted before are no longer held; wake the channels waiting for room."""
        self.held = max(0, self.held - n)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set()

    async def wait_for_room(self) -> None:
        """Return when some bytes have been given back."""
        waiter = anyio.Event()
        self._waiters.append(waiter)
        try:
            await waiter.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


class FramedChannel(Generic[M]):
    """Sends and receives whole messages; writes are serialised so frames never interleave."""

    def __init__(
        self,
        stream: ByteStream,
        decode: Callable[[bytes | memoryview], M],
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        budget: ReceiveBudget | None = None,
    ) -> None:
        self.stream = stream
        self._decode = decode
        self._decoder = FrameDecoder(max_frame, budget)
        self._budget = budget
        self._max_frame = max_frame
        self._pending: list[bytes | memoryview] = []
        # Uncontended (the usual case: one reply at a time), the lock is taken without a trip
        # through the event loop; the write itself is the request's checkpoint if it waits.
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._send_nowait = stream.send_nowait if isinstance(stream, NowaitSend) else None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.last_size = 0  # the payload size of the message `receive` returned last

    @property
    def max_frame(self) -> int:
        """The largest frame either way, in bytes (an agent raises it after the handshake)."""
        return self._max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._max_frame = self._decoder.max_frame = value

    async def send(self, message: Message) -> None:
        """Send one message; a broken stream raises `TransportError`.

        Large stream data is written as two pieces, its frame's head then the data itself, so
        the data is never copied into an encoded message (see `stream_data_head`).
        """
        if type(message) is StreamData and len(message.data) >= SPLIT_SEND:
            data = message.data
            head = stream_data_head(message.id, len(data), message.end)
            check_size(len(head) - 4 + len(data), self._max_frame)
            await self._write(head, data)
            return
        await self.send_payload(encode(message))

    def try_send(self, message: Message) -> bool:
        """Send a message at once if no other is being written and the stream takes it without
        waiting (see `NowaitSend`); False, and nothing sent, otherwise.

        The hot path of a reply: no lock, no timer, no trip through the event loop. A message
        too large to frame raises `BadRequest`, as `send` does.
        """
        if self._send_nowait is None or self._write_lock.locked():
            return False
        if type(message) is StreamData and len(message.data) >= SPLIT_SEND:
            return False
        return self.try_send_payload(encode(message))

    def try_send_payload(self, payload: bytes) -> bool:
        """`try_send` of a message already encoded (see `encode_request`)."""
        send_nowait = self._send_nowait
        if send_nowait is None or self._write_lock.locked():
            return False
        data = frame(payload, self._max_frame)
        if not send_nowait(data):
            return False
        self.bytes_sent += len(data)
        return True

    async def send_payload(self, payload: bytes) -> None:
        """Send one message already encoded (see `encode_request`)."""
        await self._write(frame(payload, self._max_frame))

    async def _write(self, *pieces: bytes) -> None:
        """Write `pieces` in order, none of another message between them."""
        async with self._write_lock:
            try:
                for piece in pieces:
                    await self.stream.send(piece)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise TransportError(
                    f"cannot send to peer: {str(exc) or type(exc).__name__}"
                ) from exc
        self.bytes_sent += sum(len(piece) for piece in pieces)

    async def receive(self) -> M | None:
        """Return the next message, or None at a clean end of stream."""
        while not self._pending:
            # A frame in progress is read to its end in as few reads as the transport allows.
            size = await self._wait_for_room(min(max(READ_SIZE, self._decoder.remaining), MAX_READ))
            try:
                data = await self.stream.receive(size)
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
        payload = self._pending.pop()
        self.last_size = len(payload)
        return self._decode(payload)

    async def _wait_for_room(self, size: int) -> int:
        """Return `size` (the bytes the next read may take) once the budget has room for them
        and for the rest of the frame in progress (see `_framing`)."""
        budget = self._budget
        if budget is None or self._decoder.reserve(size):
            return size
        with anyio.move_on_after(BUDGET_WAIT):
            while not self._decoder.reserve(size):
                await budget.wait_for_room()
            return size
        raise ProtocolError(
            f"waited {BUDGET_WAIT:g} s for room to receive a frame of "
            f"{self._decoder.pending + self._decoder.remaining} bytes: the agent holds "
            f"{size_text(budget.size)} of unfinished frames and requests across its connections"
            " (send large files with upload())"
        )

    async def aclose(self) -> None:
        """Close the underlying stream (what was received of an unfinished frame is dropped)."""
        self._decoder.release()
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
    chunk_size: int = BULK_CHUNK,
) -> int:
    """Send a byte stream as `StreamData` chunks of at most `chunk_size`, one credit each, then
    its end.

    Pieces go as they come when they are large (a file read in MiB), so their bytes are never
    copied; small ones (tar headers, short files) are joined up to `chunk_size` first. Returns
    the number of bytes sent. Both ends use it: the core for uploads, the agent for downloads.
    """
    held: list[bytes] = []
    size = sent = 0

    async def flush() -> None:
        nonlocal size, sent
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        size = 0
        await gate.take()
        await send(StreamData(id=request_id, data=data))
        sent += len(data)

    async for chunk in chunks:
        if size + len(chunk) > chunk_size and held:
            await flush()
        at = 0
        while len(chunk) - at > chunk_size:  # a piece larger than a chunk goes in slices
            held.append(chunk[at : at + chunk_size])
            at += chunk_size
            await flush()
        if at < len(chunk):
            held.append(chunk[at:] if at else chunk)
            size += len(chunk) - at
            if size >= chunk_size:
                await flush()
    if held:
        await flush()
    await send(StreamData(id=request_id, data=b"", end=True))
    return sent
