"""A byte stream over a pair of pipes on asyncio: the local agent's link, at both of its ends.

The agent reads its standard input and writes its standard output through it (`rock_agent`'s
`_stdio`); a program that starts a local agent reads and writes the agent's pipes through it
(`_hosts`). A session command crosses each pipe once per direction, so what a message costs
here is paid on every command: this stream takes it straight from the pipe's transport.

Rules:
- Input is handed out in the pieces the loop read it in (`PipePieces`): no buffer that every
  byte is copied into and out of again, and no hop through another callback per read (as
  asyncio's subprocess and stream readers make).
- Reading pauses while more than `PipePieces.HIGH` bytes wait unread; it goes on below half.
- `send_nowait` writes only while nothing waits unwritten (`_channel.NowaitSend`); `send` writes
  and waits while the pipe's transport holds more than its high-water mark.
- Both pipes are widened to `PIPE_SIZE` when they are pipes: with the kernel's default of
  64 KiB a chunk of a transfer (1 MiB) crosses in sixteen hand-overs, each a wake-up of the
  other process; with 1 MiB, in one.
- asyncio only (`open_pipe_stream`); elsewhere a caller uses anyio's process streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
from collections import deque
from typing import IO

import anyio

PIPE_SIZE = 1 << 20  # the most an unprivileged process may ask for (fs.pipe-max-size)


class PipeStream:
    """Reads what one pipe delivers, writes into another (see the module rules)."""

    def __init__(self, reader: PipePieces, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, item: bytes, /) -> None:
        """Write `item`; wait while the pipe's transport holds more than its high-water mark."""
        self._writer.write(item)
        await self._writer.drain()

    def send_nowait(self, item: bytes, /) -> bool:
        """Write `item` if the pipe has taken all written before (nothing is buffered, so
        nothing could make a writer wait); else write nothing (`_channel.NowaitSend`)."""
        transport = self._writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        transport.write(item)
        return True

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        """The next piece read (at most `max_bytes`); `anyio.EndOfStream` at the end, and
        `anyio.BrokenResourceError` for a pipe that failed (as every `ByteStream`)."""
        try:
            data = await self._reader.read(max_bytes)
        except OSError as exc:
            raise anyio.BrokenResourceError(f"the pipe failed: {exc}") from exc
        if not data:
            raise anyio.EndOfStream
        return data

    def close_input(self) -> None:
        """Close the pipe this stream writes (the peer reads to its end); keep reading."""
        self._writer.close()

    async def aclose(self) -> None:
        """Close both pipes."""
        self._writer.close()
        self._reader.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


async def open_pipe_stream(read_from: IO[bytes], write_to: IO[bytes]) -> PipeStream:
    """A stream reading the pipe `read_from` and writing the pipe `write_to` (unbuffered
    files, which the stream owns from now on), on the running asyncio loop."""
    loop = asyncio.get_running_loop()
    widen_pipe(read_from.fileno())
    widen_pipe(write_to.fileno())
    reader = PipePieces()
    await loop.connect_read_pipe(lambda: reader, read_from)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, write_to)
    return PipeStream(reader, asyncio.StreamWriter(transport, protocol, None, loop))


class PipePieces(asyncio.Protocol):
    """What a read pipe delivers, kept in the pieces it came in; reading pauses past `HIGH`."""

    HIGH = 2 * PIPE_SIZE

    def __init__(self) -> None:
        self._pieces: deque[bytes] = deque()
        self._held = 0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._pieces.append(data)
        self._held += len(data)
        if self._held > self.HIGH and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._error = exc
        self._wake()

    def close(self) -> None:
        """Stop reading (what is held is still handed out, then the end)."""
        if self._transport is not None:
            self._transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, max_bytes: int) -> bytes:
        """The next piece received (at most `max_bytes` of it); b"" at the end."""
        while not self._pieces:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        piece = self._pieces[0]
        if len(piece) > max_bytes:
            self._pieces[0] = piece[max_bytes:]
            piece = piece[:max_bytes]
        else:
            self._pieces.popleft()
        self._held -= len(piece)
        if self._paused and self._held <= self.HIGH // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return piece


def widen_pipe(fd: int) -> None:
    """Give pipe `fd` a buffer of `PIPE_SIZE` bytes if it is a pipe (best effort)."""
    size_op = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    with contextlib.suppress(OSError):
        if size_op is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, size_op, PIPE_SIZE)


__all__ = ["PIPE_SIZE", "PipePieces", "PipeStream", "open_pipe_stream", "widen_pipe"]
