"""The agent's standard input and output as one byte stream (asyncio pipes).

File descriptor 1 is duplicated for the protocol and then pointed at stderr, so a stray
``print`` anywhere in the process can never corrupt the frame stream.

Both pipes are widened to `PIPE_SIZE` when they are pipes: with the kernel's default of 64 KiB a
chunk of a transfer (1 MiB) crosses in sixteen hand-overs between the two processes, each a
wake-up of the other; with 1 MiB, in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import sys

PIPE_SIZE = 1 << 20  # the most an unprivileged process may ask for (fs.pipe-max-size)


class StdioStream:
    """Reads frames from stdin, writes frames to the original stdout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return cls(reader, writer)

    async def send(self, item: bytes, /) -> None:
        self._writer.write(item)
        await self._writer.drain()

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        return await self._reader.read(max_bytes)

    async def aclose(self) -> None:
        self._writer.close()

    def __repr__(self) -> str:
        return "StdioStream()"


def widen_pipe(fd: int) -> None:
    """Give pipe `fd` a buffer of `PIPE_SIZE` bytes if it is a pipe (best effort)."""
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
