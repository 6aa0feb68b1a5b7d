"""Bulk stream data crosses a channel without being copied, and decodes as the same message."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rock_core import BadRequest
from rock_core._channel import BULK_CHUNK, SPLIT_SEND, CreditGate, FramedChannel, send_stream
from rock_core._framing import FrameDecoder, frame
from rock_core._protocol import (
    Message,
    Ping,
    StreamData,
    decode_agent_message,
    decode_client_message,
    encode,
)
from rock_core._stream_head import stream_data_head
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


@settings(max_examples=200)
@given(
    request_id=st.integers(1, (1 << 63) - 1),
    size=st.sampled_from([0, 1, 31, 255, 256, 65535, 65536, 70000]),
    end=st.booleans(),
)
def test_a_hand_made_head_and_its_data_decode_as_the_message(
    request_id: int, size: int, end: bool
) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = stream_data_head(request_id, size, end) + data
    (payload,) = FrameDecoder().feed(wire)
    expected = StreamData(id=request_id, data=data, end=end)
    assert decode_agent_message(payload) == expected
    assert decode_client_message(payload) == expected


def test_the_head_counts_as_much_as_the_encoded_message() -> None:
    data = b"x" * BULK_CHUNK
    head = stream_data_head(7, len(data))
    # The same message and frame, give or take the width of the data's length field.
    assert len(head) + len(data) - len(frame(encode(StreamData(id=7, data=data)))) in (0, 2)


class Recorder:
    """A byte stream that keeps what is sent, as the objects it was given."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, item: bytes, /) -> None:
        self.sent.append(item)

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        raise anyio.EndOfStream

    async def aclose(self) -> None:
        pass


async def test_large_stream_data_is_written_after_its_head_not_copied() -> None:
    stream = Recorder()
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message)
    data = bytes(BULK_CHUNK)
    await channel.send(StreamData(id=3, data=data, end=False))
    head, body = stream.sent
    assert body is data  # the very object: no copy on the way
    (payload,) = FrameDecoder().feed(head + body)
    assert decode_agent_message(payload) == StreamData(id=3, data=data)
    assert channel.bytes_sent == len(head) + len(data)


async def test_small_stream_data_and_other_messages_stay_one_write() -> None:
    stream = Recorder()
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message)
    await channel.send(StreamData(id=3, data=b"x" * (SPLIT_SEND - 1)))
    await channel.send(Ping(id=4))
    assert [len(piece) for piece in stream.sent] == [
        len(frame(encode(StreamData(id=3, data=b"x" * (SPLIT_SEND - 1))))),
        len(frame(encode(Ping(id=4)))),
    ]


async def test_stream_data_over_the_frame_limit_is_refused_before_a_byte_is_sent() -> None:
    stream = Recorder()
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message, max_frame=1000)
    with pytest.raises(BadRequest) as caught:
        await channel.send(StreamData(id=3, data=bytes(SPLIT_SEND)))
    size = len(stream_data_head(3, SPLIT_SEND)) - 4 + SPLIT_SEND  # the payload, as msgspec's
    assert caught.value.message.startswith(f"a message of {size} bytes is over the 1000 bytes")
    assert stream.sent == []
    await channel.send(Ping(id=4))  # the channel goes on
    assert len(stream.sent) == 1


async def _pieces(sizes: list[int]) -> list[StreamData]:
    sent: list[StreamData] = []

    async def send(message: Message) -> None:
        assert isinstance(message, StreamData)
        sent.append(message)

    async def chunks():  # type: ignore[no-untyped-def]
        for n, size in enumerate(sizes):
            yield bytes([n % 251]) * size

    total = await send_stream(send, CreditGate(1 << 30), 9, chunks())
    assert total == sum(sizes)
    return sent


async def test_send_stream_sends_large_pieces_as_they_are_and_joins_small_ones() -> None:
    sizes = [512, BULK_CHUNK, BULK_CHUNK, 100, 200, 3 * BULK_CHUNK + 5, 0, 7]
    sent = await _pieces(sizes)
    assert [len(m.data) for m in sent] == [
        512,
        BULK_CHUNK,
        BULK_CHUNK,
        300,
        BULK_CHUNK,
        BULK_CHUNK,
        BULK_CHUNK,
        5 + 7,
        0,
    ]
    assert sent[-1].end and not any(m.end for m in sent[:-1])
    expected = b"".join(bytes([n % 251]) * size for n, size in enumerate(sizes))
    assert b"".join(m.data for m in sent) == expected


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 511, 4096, 1 << 17, BULK_CHUNK, BULK_CHUNK + 1])))
def test_send_stream_never_sends_a_chunk_over_the_limit(sizes: list[int]) -> None:
    sent = anyio.run(_pieces, sizes)
    assert all(0 < len(m.data) <= BULK_CHUNK for m in sent[:-1])
    assert sent[-1] == StreamData(id=9, data=b"", end=True)


def test_a_frame_within_one_read_is_handed_out_without_a_copy() -> None:
    data = frame(b"a" * 1000) + frame(b"b" * 10)
    first, second = FrameDecoder().feed(data)
    assert isinstance(first, memoryview) and first.obj is data
    assert bytes(first) == b"a" * 1000 and bytes(second) == b"b" * 10


def test_remaining_says_what_the_frame_in_progress_still_needs() -> None:
    decoder = FrameDecoder()
    data = frame(b"z" * 5000)
    assert decoder.feed(data[:2]) == [] and decoder.remaining == 0  # no header yet
    assert decoder.feed(data[2:1000]) == [] and decoder.remaining == len(data) - 1000
    assert decoder.feed(data[1000:]) == [b"z" * 5000] and decoder.remaining == 0
