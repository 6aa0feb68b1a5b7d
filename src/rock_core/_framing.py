"""Length-prefixed framing, with no I/O: bytes in, whole frames out.

Rules:
- A frame is a 4-byte big-endian payload length followed by the payload.
- A peer that announces a frame larger than `max_frame` has broken the framing
  (`ProtocolError`): a corrupt or hostile peer cannot make us allocate without bound.
- A message of our own too large to frame is refused before a byte is sent (`BadRequest`): the
  stream is intact, so only that message fails, never the link.
- A decoder may share a `Budget` with others (an agent's connections): the bytes it holds of
  unfinished frames, past the first `UNCHARGED`, are charged to it. The reader asks
  `reserve(n)` before it reads `n` more bytes and reads only once that is granted (see
  `_channel`); `feed` then settles the charge to what is really held. Small frames are never
  charged, so a full budget never stalls a link that sends only small messages. Whatever a
  decoder holds goes back with `release()`.
"""

from __future__ import annotations

import struct
from typing import Protocol

from ._errors import BadRequest, ProtocolError

DEFAULT_MAX_FRAME = 16 << 20
# Bytes a receiver holds free of any budget: a small frame (up to 64 KiB) and one read of
# 64 KiB beyond it, so a reader that reserves a read ahead never waits for a small frame.
UNCHARGED = 128 << 10
_HEADER = struct.Struct(">I")


def size_text(n: int) -> str:
    """A size in words: whole MiB when it is some, else bytes."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Return `payload` with its length prefix; `BadRequest` if it is over `max_frame`."""
    if len(payload) > max_frame:
        raise BadRequest(
            f"a message of {len(payload)} bytes is over the {size_text(max_frame)} frame limit:"
            " large files go through upload()/download(), large output through on_output"
        )
    return _HEADER.pack(len(payload)) + payload


class Budget(Protocol):
    """Bytes that many receivers may hold at once, in total."""

    def take(self, n: int) -> bool:
        """Count `n` more bytes held; False (and nothing counted) if that would pass the size."""

    def give(self, n: int) -> None:
        """`n` bytes counted before are no longer held."""


class FrameDecoder:
    """Accumulates received bytes and yields complete frame payloads in order."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, budget: Budget | None = None):
        self.max_frame = max_frame
        self.budget = budget
        self._buffer = bytearray()
        self._charged = 0  # bytes of the budget this decoder holds

    def reserve(self, n: int) -> bool:
        """True if `n` more bytes may be received now (charged to the budget if it takes them)."""
        need = max(0, len(self._buffer) + n - UNCHARGED) - self._charged
        if need <= 0 or self.budget is None:
            return True
        if not self.budget.take(need):
            return False
        self._charged += need
        return True

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
        self._settle()
        return frames

    def _settle(self) -> None:
        if self.budget is None:
            return
        held = max(0, len(self._buffer) - UNCHARGED)
        if held < self._charged:
            self.budget.give(self._charged - held)
            self._charged = held
        elif held > self._charged and self.budget.take(held - self._charged):
            self._charged = held  # fed past its reservation (a reader that did not reserve)

    def release(self) -> None:
        """Drop what is held and give its bytes back to the budget (the stream has ended)."""
        self._buffer = bytearray()
        if self.budget is not None:
            self.budget.give(self._charged)
        self._charged = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)
