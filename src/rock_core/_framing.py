"""Length-prefixed framing, with no I/O: bytes in, whole frames out.

A frame is a 4-byte big-endian payload length followed by the payload. Frames larger than
`max_frame` are refused on both sides (`ProtocolError`), so a corrupt or hostile peer cannot
make us allocate without bound. The codec (`_protocol`) and the transport are separate.
"""

from __future__ import annotations

import struct

from ._errors import ProtocolError

DEFAULT_MAX_FRAME = 16 << 20
_HEADER = struct.Struct(">I")


def frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Return `payload` with its length prefix."""
    if len(payload) > max_frame:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the maximum of {max_frame}")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Accumulates received bytes and yields complete frame payloads in order."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of the frames they completed."""
        self._buffer += data
        frames: list[bytes] = []
        buf = self._buffer
        offset = 0
        while len(buf) - offset >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf, offset)
            if length > self.max_frame:
                raise ProtocolError(
                    f"peer announced a frame of {length} bytes; the maximum is {self.max_frame}"
                )
            end = offset + _HEADER.size + length
            if len(buf) < end:
                break
            frames.append(bytes(buf[offset + _HEADER.size : end]))
            offset = end
        if offset:
            del buf[:offset]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)
