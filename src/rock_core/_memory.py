"""An in-memory byte pipe: two connected `ByteStream`s, for tests and in-process agents.

Rules:
- What one end sends, the other receives, in order; closing an end ends the peer's receive
  with `EndOfStream`, and a send to a closed peer raises `BrokenResourceError`.
"""

from __future__ import annotations

import math

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


class MemoryByteStream:
    """One end of an in-memory byte pipe; see `memory_stream_pair`."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._rest = b""

    async def send(self, item: bytes, /) -> None:
        """Send bytes to the peer; `BrokenResourceError` once the peer has closed."""
        await self._send.send(bytes(item))

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        """Receive at most `max_bytes`; `EndOfStream` once the peer has closed."""
        data = self._rest or await self._receive.receive()
        self._rest = data[max_bytes:]
        return data[:max_bytes]

    async def aclose(self) -> None:
        """Close both directions; the peer's receive then ends with `EndOfStream`."""
        self._send.close()
        self._receive.close()


def memory_stream_pair(max_buffer: float = math.inf) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams: what one sends, the other receives."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)


__all__ = ["MemoryByteStream", "memory_stream_pair"]
