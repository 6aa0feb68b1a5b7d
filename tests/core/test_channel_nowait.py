"""A channel's `try_send`: a message goes at once only when nothing else is being written and
the stream takes it whole without waiting; otherwise nothing is sent and `send` does it, in
order. The agent's replies take this path (no lock, no timer). On both backends."""

from __future__ import annotations

import anyio
import pytest

from rock_core import BadRequest
from rock_core._channel import SPLIT_SEND, FramedChannel
from rock_core._framing import FrameDecoder
from rock_core._protocol import Message, Pong, StreamData, decode_agent_message
from rock_core.testing import memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


class _Stream:
    """Records what it takes; `send` waits for `drained` while `blocked`; `send_nowait` takes
    bytes only while `room`."""

    def __init__(self) -> None:
        self.taken: list[bytes] = []
        self.room = True
        self.blocked = False
        self.drained = anyio.Event()

    async def send(self, item: bytes, /) -> None:
        if self.blocked:
            await self.drained.wait()
        self.taken.append(item)

    def send_nowait(self, item: bytes, /) -> bool:
        if not self.room:
            return False
        self.taken.append(item)
        return True

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        raise anyio.EndOfStream

    async def aclose(self) -> None:
        pass


def _messages(stream: _Stream) -> list[Message]:
    frames = FrameDecoder().feed(b"".join(stream.taken))
    return [decode_agent_message(f) for f in frames]


async def test_a_message_goes_at_once_when_the_stream_has_room() -> None:
    stream = _Stream()
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message)
    assert channel.try_send(Pong(id=1, time=1.0))
    assert _messages(stream) == [Pong(id=1, time=1.0)]
    assert channel.bytes_sent == len(stream.taken[0])


async def test_nothing_is_sent_when_the_stream_has_no_room_and_send_then_does_it() -> None:
    stream = _Stream()
    stream.room = False
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message)
    assert not channel.try_send(Pong(id=1, time=1.0))
    assert stream.taken == [] and channel.bytes_sent == 0
    await channel.send(Pong(id=1, time=1.0))
    assert _messages(stream) == [Pong(id=1, time=1.0)]


async def test_a_message_never_overtakes_one_being_written() -> None:
    stream = _Stream()
    stream.blocked = True
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message)
    async with anyio.create_task_group() as tg:
        tg.start_soon(channel.send, Pong(id=1, time=1.0))
        await anyio.wait_all_tasks_blocked()
        assert not channel.try_send(Pong(id=2, time=2.0))  # the first still holds the lock
        tg.start_soon(channel.send, Pong(id=2, time=2.0))
        await anyio.wait_all_tasks_blocked()
        stream.drained.set()
    assert _messages(stream) == [Pong(id=1, time=1.0), Pong(id=2, time=2.0)]
    assert channel.try_send(Pong(id=3, time=3.0))


async def test_large_stream_data_and_oversized_messages_keep_their_paths() -> None:
    stream = _Stream()
    channel: FramedChannel[Message] = FramedChannel(stream, decode_agent_message, max_frame=1024)
    assert not channel.try_send(StreamData(id=1, data=b"x" * SPLIT_SEND))  # written in two
    with pytest.raises(BadRequest, match=r"^a message of \d+ bytes is over the 1024 bytes"):
        channel.try_send(StreamData(id=1, data=b"x" * 2048))
    assert stream.taken == []


async def test_a_stream_without_send_nowait_always_takes_the_awaited_path() -> None:
    client, server = memory_stream_pair()
    channel: FramedChannel[Message] = FramedChannel(client, decode_agent_message)
    assert not channel.try_send(Pong(id=1, time=1.0))
    await channel.send(Pong(id=1, time=1.0))
    peer: FramedChannel[Message] = FramedChannel(server, decode_agent_message)
    assert await peer.receive() == Pong(id=1, time=1.0)
