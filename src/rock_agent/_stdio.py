"""The agent's standard input and output as one byte stream (asyncio pipes).

File descriptor 1 is duplicated for the protocol and then pointed at stderr, so a stray
``print`` anywhere in the process can never corrupt the frame stream.
"""

from __future__ import annotations

import asyncio
import os
import sys


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
