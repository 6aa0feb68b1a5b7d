"""The chunks of a download, handed from the event loop to the thread that unpacks them.

Rules:
- `put` (event loop) queues a chunk; `read` (worker thread) takes the next one and, once it
  has it, grants the sender one more chunk of credit (`grant`). So the chunks held here are at
  most the credit window the caller granted first, whatever the speed of the disk.
- `close` marks the end: `read` then returns b"", and a chunk put after it is the agent's
  fault (`ProtocolError`). `abort` (the download failed) wakes the
  reader with a `TransportError`, so the thread ends and leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.from_thread

from rock_core import ProtocolError, TransportError
from rock_core.serving import WINDOW


class ChunkFeed:
    """A file-like read end (`read`) fed with chunks from async code (`put`)."""

    def __init__(self, grant: Callable[[], Awaitable[None]]) -> None:
        self._grant = grant
        self._send, self._receive = anyio.create_memory_object_stream[bytes](WINDOW * 2)
        self._chunk = b""
        self._at = 0  # bytes of `_chunk` already read
        self.started = False  # an unpacker reads it
        self.aborted = False

    async def put(self, data: bytes, end: bool = False) -> None:
        """Queue a chunk (the sender keeps to its credit, so this waits only for a bad one);
        `ProtocolError` for one that comes after the end."""
        if data:
            try:
                await self._send.send(data)
            except anyio.ClosedResourceError:
                raise ProtocolError("the agent sent download data after its end") from None
        if end:
            self.close()

    def close(self) -> None:
        """No more chunks: the reader sees the end once it has taken the rest."""
        self._send.close()

    def abort(self) -> None:
        """The download failed: the reader stops with a `TransportError`."""
        self.aborted = True
        self._send.close()

    def read(self, n: int = -1, /) -> bytes:
        """Up to `n` bytes of the stream (in a worker thread); b"" at its end."""
        if self._at == len(self._chunk):
            self._chunk, self._at = anyio.from_thread.run(self._take), 0
        chunk, at = self._chunk, self._at
        size = len(chunk) - at if n < 0 else min(n, len(chunk) - at)
        self._at += size
        return chunk if size == len(chunk) else chunk[at : at + size]  # whole: not copied

    async def _take(self) -> bytes:
        try:
            data = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            data = b""
        if self.aborted:
            raise TransportError("the download was abandoned")
        if data:
            await self._grant()
        return data


__all__ = ["ChunkFeed"]
