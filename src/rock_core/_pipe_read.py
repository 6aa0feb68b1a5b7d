"""The read end of a pipe as an anyio byte stream that hands out the pieces read (asyncio).

anyio's process streams read through `asyncio.StreamReader`, which copies every byte into its
buffer and out again, and pauses the pipe each time 128 KiB wait there (an epoll register and
unregister per pause): for a transfer's 1 MiB chunks that is most of what the caller spends on
the pipe. Here each piece asyncio read is kept as it is and handed out whole (or sliced, when
the reader asks for less), and reading pauses only once `PieceReader.HIGH` bytes wait.

Rules:
- asyncio only: under trio a child's output stays anyio's own stream (`spawn_piped`).
- `receive` returns at least one byte, raises `anyio.EndOfStream` at the end and
  `anyio.BrokenResourceError` for a failed pipe; after `aclose`, `anyio.ClosedResourceError`.
- A cancelled `receive` loses nothing: the pieces stay queued for the next one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process

from ._aio import on_asyncio

HIGH = 2 << 20  # bytes held before reading pauses: two transfer chunks


class PieceReader(asyncio.Protocol):
    """What a read pipe delivers, kept in the pieces it came in; reading pauses past `HIGH`."""

    def __init__(self) -> None:
        self._pieces: deque[bytes] = deque()
        self._held = 0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.ReadTransport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._pieces.append(data)
        self._held += len(data)
        if self._held > HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
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
        if self._paused and self._held <= HIGH // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece


class PipeReceiveStream(ByteReceiveStream):
    """A `PieceReader` as an anyio `ByteReceiveStream`."""

    def __init__(self, reader: PieceReader) -> None:
        self._reader = reader
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            data = await self._reader.read(max_bytes)
        except OSError as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        self._closed = True
        if self._reader.transport is not None:
            self._reader.transport.close()


async def open_pipe_receive(fd: int) -> PipeReceiveStream:
    """A receive stream over the read end of pipe `fd` (which it then owns)."""
    reader = PieceReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        await asyncio.get_running_loop().connect_read_pipe(lambda: reader, pipe)
    except BaseException:
        pipe.close()
        raise
    return PipeReceiveStream(reader)


async def spawn_piped(command: Sequence[str], **kwargs: Any) -> tuple[Process, ByteReceiveStream]:
    """Start `command` with pipes on its stdin and stdout (`kwargs` go to `open_process`);
    return it and its output, read in pieces on asyncio (anyio's stream under trio).
    The caller closes the output, as well as the process."""
    read_fd, write_fd = os.pipe() if on_asyncio() else (-1, subprocess.PIPE)
    try:
        process = await anyio.open_process(
            command, stdin=subprocess.PIPE, stdout=write_fd, **kwargs
        )
    except BaseException:
        if read_fd >= 0:
            os.close(read_fd)
        raise
    finally:
        if read_fd >= 0:
            os.close(write_fd)  # the child holds its copy
    if read_fd < 0:
        assert process.stdout is not None
        return process, process.stdout
    return process, await open_pipe_receive(read_fd)


__all__ = ["HIGH", "PieceReader", "PipeReceiveStream", "open_pipe_receive", "spawn_piped"]
