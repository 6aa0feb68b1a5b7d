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
- Once its header is in, a frame is charged whole (not only the part received) and keeps that
  charge until it is complete: links that share a budget then never each hold part of a frame
  while waiting for room the others hold, which would stall them all. A link whose frame has
  no room waits holding at most its first `UNCHARGED` bytes, uncharged.
"""

from __future__ import annotations

import struct
from collections import deque
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
    check_size(len(payload), max_frame)
    return _HEADER.pack(len(payload)) + payload


def check_size(size: int, max_frame: int = DEFAULT_MAX_FRAME) -> None:
    """`BadRequest` if a message of `size` bytes is over `max_frame`."""
    if size > max_frame:
        raise BadRequest(
            f"a message of {size} bytes is over the {size_text(max_frame)} frame limit:"
            " large files go through upload()/download(), large output through on_output"
        )


class Budget(Protocol):
    """Bytes that many receivers may hold at once, in total."""

    def take(self, n: int) -> bool:
        """Count `n` more bytes held; False (and nothing counted) if that would pass the size."""

    def give(self, n: int) -> None:
        """`n` bytes counted before are no longer held."""


class FrameDecoder:
    """Accumulates received bytes and yields complete frame payloads in order.

    Received pieces are kept as they came, not appended to one buffer: a frame that lies
    within one piece is handed out as a view of it (no copy), and one that spans pieces is
    joined once, when it is complete (a large chunk of a transfer arrives in many reads).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, budget: Budget | None = None):
        self.max_frame = max_frame
        self.budget = budget
        self._parts: deque[bytes] = deque()
        self._offset = 0  # bytes of the first part already handed out
        self._held = 0  # bytes received and not yet handed out
        self._charged = 0  # bytes of the budget this decoder holds

    def reserve(self, n: int) -> bool:
        """True if `n` more bytes may be received now (charged to the budget if it takes them)."""
        need = max(0, self._held + max(n, self.remaining) - UNCHARGED) - self._charged
        if need <= 0 or self.budget is None:
            return True
        if not self.budget.take(need):
            return False
        self._charged += need
        return True

    def feed(self, data: bytes) -> list[bytes | memoryview]:
        """Add received bytes; return the payloads of the frames they completed."""
        frames: list[bytes | memoryview] = []
        if data:
            self._parts.append(data if type(data) is bytes else bytes(data))
            self._held += len(data)
        while self._held >= _HEADER.size:
            (length,) = _HEADER.unpack(self._peek(_HEADER.size))
            if length > self.max_frame:
                raise ProtocolError(
                    f"peer announced a frame of {length} bytes; the maximum is {self.max_frame}"
                )
            if self._held < _HEADER.size + length:
                break
            self._take(_HEADER.size)
            frames.append(self._take(length))
        self._settle()
        return frames

    @property
    def remaining(self) -> int:
        """Bytes still to come of the frame in progress (0 if none, or its header is not in)."""
        if self._held < _HEADER.size:
            return 0
        length: int = _HEADER.unpack(self._peek(_HEADER.size))[0]
        return max(0, _HEADER.size + min(length, self.max_frame) - self._held)

    def _peek(self, n: int) -> bytes:
        """The next `n` bytes held (a frame header), without taking them."""
        out = b""
        skip = self._offset
        for part in self._parts:
            out += part[skip : skip + n - len(out)]
            skip = 0
            if len(out) == n:
                break
        return out

    def _take(self, n: int) -> bytes | memoryview:
        """The next `n` bytes held: a view of the first part if it holds them all, else joined."""
        if not n:
            return b""
        self._held -= n
        first = self._parts[0]
        start = self._offset
        if len(first) - start > n:
            self._offset += n
            return memoryview(first)[start : start + n]
        if len(first) - start == n:
            self._parts.popleft()
            self._offset = 0
            return first if start == 0 else memoryview(first)[start:]
        pieces: list[bytes | memoryview] = []
        while n:
            part = self._parts[0]
            piece = memoryview(part)[self._offset : self._offset + n]
            pieces.append(piece)
            n -= len(piece)
            if self._offset + len(piece) == len(part):
                self._parts.popleft()
                self._offset = 0
            else:
                self._offset += len(piece)
        return b"".join(pieces)

    def _settle(self) -> None:
        """Charge the whole frame in progress if the budget takes it, else what is held."""
        if self.budget is None:
            return
        for want in (self._held + self.remaining, self._held):
            want = max(0, want - UNCHARGED)
            if want <= self._charged:
                if want < self._charged:
                    self.budget.give(self._charged - want)
                    self._charged = want
                return
            if self.budget.take(want - self._charged):
                self._charged = want  # a new frame's header came, or a reader did not reserve
                return

    def release(self) -> None:
        """Drop what is held and give its bytes back to the budget (the stream has ended)."""
        self._parts.clear()
        self._offset = self._held = 0
        if self.budget is not None:
            self.budget.give(self._charged)
        self._charged = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return self._held
