"""Length-prefixed framing: whole frames out, however the bytes arrive."""

from __future__ import annotations

import itertools
import struct

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rock_core import BadRequest, ProtocolError
from rock_core._channel import FramedChannel, ReceiveBudget
from rock_core._framing import DEFAULT_MAX_FRAME, UNCHARGED, FrameDecoder, frame
from rock_core.testing import memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)


def test_round_trip() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"hello")) == [b"hello"]
    assert decoder.pending == 0


def test_empty_payload_is_a_frame() -> None:
    assert frame(b"") == b"\x00\x00\x00\x00"
    assert FrameDecoder().feed(frame(b"")) == [b""]


def test_byte_by_byte_feed_yields_the_frame_once_complete() -> None:
    data = frame(b"abcdef")
    decoder = FrameDecoder()
    for index, byte in enumerate(data[:-1]):
        assert decoder.feed(bytes([byte])) == []
        assert decoder.pending == index + 1
    assert decoder.feed(data[-1:]) == [b"abcdef"]
    assert decoder.pending == 0


def test_several_frames_in_one_feed_keep_their_order_and_the_rest() -> None:
    data = frame(b"one") + frame(b"two") + frame(b"three") + frame(b"four")[:5]
    decoder = FrameDecoder()
    assert decoder.feed(data) == [b"one", b"two", b"three"]
    assert decoder.pending == 5
    assert decoder.feed(b"our") == [b"four"]


def test_frame_refuses_a_payload_over_the_maximum() -> None:
    assert frame(b"x" * 8, max_frame=8) == struct.pack(">I", 8) + b"x" * 8
    # Our own message: refused before a byte is sent, so the link is intact (not a transport
    # error) and only this message fails.
    with pytest.raises(BadRequest) as caught:
        frame(b"x" * 9, max_frame=8)
    assert caught.value.message == (
        "a message of 9 bytes is over the 8 bytes frame limit: large files go through"
        " upload()/download(), large output through on_output"
    )


def test_decoder_refuses_an_announced_length_over_the_maximum() -> None:
    decoder = FrameDecoder(max_frame=8)
    # Refused from the header alone: no waiting for (or buffering of) the huge body.
    with pytest.raises(
        ProtocolError, match=r"^peer announced a frame of 9 bytes; the maximum is 8$"
    ):
        decoder.feed(struct.pack(">I", 9))


def test_default_maximum_applies() -> None:
    with pytest.raises(ProtocolError, match=f"the maximum is {DEFAULT_MAX_FRAME}$"):
        FrameDecoder().feed(struct.pack(">I", DEFAULT_MAX_FRAME + 1))


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
def test_any_split_of_any_frames_yields_the_same_payloads(
    payloads: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(frame(p) for p in payloads)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out.extend(decoder.feed(data[start:end]))
    assert out == payloads
    assert decoder.pending == 0


def test_unfinished_frames_share_one_budget_reserved_before_each_read() -> None:
    budget = ReceiveBudget(3 * UNCHARGED)
    first, second, small = (FrameDecoder(budget=budget) for _ in range(3))
    assert first.reserve(4 * UNCHARGED)  # the first UNCHARGED bytes are free
    assert budget.held == 3 * UNCHARGED
    assert first.feed(struct.pack(">I", 6 * UNCHARGED) + b"x" * (4 * UNCHARGED - 4)) == []
    assert budget.held == 3 * UNCHARGED
    assert not second.reserve(2 * UNCHARGED)  # no room: its reader waits, reading nothing
    assert budget.held == 3 * UNCHARGED
    # A full budget never stalls small frames, even one that arrives in pieces.
    message = frame(b"y" * (64 << 10))
    assert small.reserve(64 << 10) and small.feed(message[:50]) == []
    assert small.reserve(64 << 10) and small.feed(message[50:]) == [b"y" * (64 << 10)]
    # A frame that completes gives its bytes back; so does a link that ends.
    assert first.reserve(2 * UNCHARGED + 4) is False  # would pass the budget
    first.release()
    assert (budget.held, first.pending) == (0, 0)
    assert second.reserve(2 * UNCHARGED)
    assert second.feed(struct.pack(">I", 2 * UNCHARGED) + b"z" * (2 * UNCHARGED)) == [
        b"z" * (2 * UNCHARGED)
    ]
    assert budget.held == 0


@pytest.mark.anyio
async def test_links_that_share_a_budget_each_finish_their_large_frame() -> None:
    # Two frames that the budget holds one at a time, sent in small pieces to two links that
    # read at once: a frame begun past its first bytes has room for all of it, so the links
    # never both hold half a frame and wait for each other (until BUDGET_WAIT ends them).
    size = 2 << 20
    budget = ReceiveBudget(size + size // 4)
    got: list[int] = []

    async def link(tg: anyio.abc.TaskGroup) -> None:
        ours, theirs = memory_stream_pair()
        channel = FramedChannel(ours, bytes, budget=budget)
        data = frame(b"x" * size)
        for at in range(0, len(data), 64 << 10):
            await theirs.send(data[at : at + (64 << 10)])
        message = await channel.receive()
        got.append(len(message or b""))
        await channel.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(link, tg)
        tg.start_soon(link, tg)
    assert (got, budget.held) == ([size, size], 0)
