"""The agent's standard input and output as one byte stream (asyncio pipes).

File descriptor 1 is duplicated for the protocol and then pointed at stderr, so a stray
``print`` anywhere in the process can never corrupt the frame stream.

Both pipes are widened to `PIPE_SIZE` when they are pipes: with the kernel's default of 64 KiB a
chunk of a transfer (1 MiB) crosses in sixteen hand-overs between the two processes, each a
wake-up of the other; with 1 MiB, in one. Input is handed out in the pieces asyncio read it in
(`_Pieces`): `asyncio.StreamReader` would copy every byte into its buffer and out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import sys
from collections import deque

PIPE_SIZE = 1 << 20  # the most an unprivileged process may ask for (fs.pipe-max-size)


class StdioStream:
    """Reads frames from stdin, writes frames to the original stdout."""

    def __init__(self, reader: _Pieces, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls) -> StdioStream:
        loop = asyncio.get_running_loop()
        out_fd = os.dup(1)
        os.dup2(2, 1)
        widen_pipe(0)
        widen_pipe(out_fd)
        sys.stdout = sys.stderr
        reader = _Pieces()
        await loop.connect_read_pipe(lambda: reader, os.fdopen(0, "rb", buffering=0))
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(reader, writer)

    async def send(self, item: bytes, /) -> None:
        self._writer.write(item)
        await self._writer.drain()

    def send_nowait(self, item: bytes, /) -> bool:
        """Write `item` if the pipe has taken all written before (nothing is buffered, so
        nothing could make a writer wait); else write nothing (`rock_core._channel.NowaitSend`)."""
        transport = self._writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        transport.write(item)
        return True

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        return await self._reader.read(max_bytes)

    async def aclose(self) -> None:
        self._writer.close()

    def __repr__(self) -> str:
        return "StdioStream()"


class _Pieces(asyncio.Protocol):
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
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
