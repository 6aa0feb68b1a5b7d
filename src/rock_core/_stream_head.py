"""The head of a `StreamData` frame, encoded by hand so that its data need not be copied.

A chunk of a transfer is most of the bytes that cross a link. Encoding it as a message copies
it into the encoder's buffer, and framing that copies it again; instead, the frame's length,
the message's other fields and the data's own msgpack header are written first, then the data
as it is. The receiver cannot tell the difference: it is the same message (msgpack maps may hold
their keys in any order, and a `bin 32` header may hold any length), so no capability is needed.

Rules:
- `stream_data_head(i, n, end) + data` decodes as `StreamData(id=i, data=data, end=end)` for
  every id and length the schema allows; a test checks it against msgspec's own decoder.
- The length prefix counts the head and the data together, as `_framing.frame` would.
"""

from __future__ import annotations

import struct

import msgspec

_FRAME_AND_BIN = struct.Struct(">I")
# A map of four keys: op, id, end, then data (whose bin 32 header ends the head).
_OP = b"\x84\xa2op\xa4data\xa2id"
_END = (b"\xa3end\xc2\xa4data\xc6", b"\xa3end\xc3\xa4data\xc6")


def stream_data_head(request_id: int, size: int, end: bool = False) -> bytes:
    """The frame header and message head that, followed by `size` bytes, make a `StreamData`."""
    body = _OP + msgspec.msgpack.encode(request_id) + _END[end] + _FRAME_AND_BIN.pack(size)
    return _FRAME_AND_BIN.pack(len(body) + size) + body


__all__ = ["stream_data_head"]
