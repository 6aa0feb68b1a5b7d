"""Messages for images, commit, stats and ports: wire forms, defaults, and a port forward's
conversation with a scripted agent (credit both ways, half-close, refusal, cancel), on asyncio
and trio.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

from rock_core import PROTOCOL_VERSION, BadRequest, NotFound, open_agent_connection
from rock_core import _protocol as p
from rock_core._channel import CHUNK_SIZE, FramedChannel
from rock_core._ports import PortForward, open_port_forward
from rock_core.testing import memory_stream_pair

NEW_REQUESTS = [
    p.ListImages,
    p.WarmImage,
    p.PruneImages,
    p.CommitSandbox,
    p.ReadStats,
    p.ForwardPort,
]
NEW_REPLIES = [p.ImageListReply, p.ImageReply, p.PruneReply, p.StatsReply, p.ForwardReply]


def test_new_messages_are_in_the_unions_of_the_side_that_receives_them() -> None:
    client_side = set(p.ClientMessage.__args__)
    agent_side = set(p.AgentMessage.__args__)
    assert set(NEW_REQUESTS) <= client_side and not set(NEW_REQUESTS) & agent_side
    assert set(NEW_REPLIES) <= agent_side and not set(NEW_REPLIES) & client_side


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"op": "images_list", "id": 1}, p.ListImages(id=1)),
        (
            {"op": "images_prune", "id": 2},
            p.PruneImages(id=2, max_bytes=None, max_percent=None, only=[], dry_run=False),
        ),
        (
            {"op": "images_prune", "id": 3, "max_percent": 12.5},
            p.PruneImages(id=3, max_percent=12.5),
        ),
        (
            {"op": "commit", "id": 4, "sandbox_id": "sb", "image": "me/x:1"},
            p.CommitSandbox(
                id=4, sandbox_id="sb", image="me/x:1", message="", changes=[], pause=True
            ),
        ),
        (
            {"op": "forward", "id": 5, "sandbox_id": "sb", "port": 8000},
            p.ForwardPort(id=5, sandbox_id="sb", port=8000, address="127.0.0.1"),
        ),
        ({"op": "stats", "id": 6, "sandbox_id": "sb"}, p.ReadStats(id=6, sandbox_id="sb")),
    ],
)
def test_short_requests_decode_with_defaults(raw: dict[str, Any], expected: p.Message) -> None:
    assert p.decode_client_message(msgspec.msgpack.encode(raw)) == expected


def test_short_replies_decode_with_defaults() -> None:
    raw = {"op": "images", "id": 1, "report": {"images": [{"image_id": "sha256:1"}]}}
    reply = p.decode_agent_message(msgspec.msgpack.encode(raw))
    assert reply == p.ImageListReply(
        id=1,
        report=p.ImageReport(
            images=[
                p.ImageInfo(
                    image_id="sha256:1",
                    tags=[],
                    size=0,
                    shared_size=0,
                    created=0.0,
                    last_used=0.0,
                    containers=0,
                )
            ],
            total_size=0,
            disk_size=0,
        ),
    )
    raw = {
        "op": "stats_result",
        "id": 2,
        "stats": {
            "sandbox_id": "sb",
            "time": 1.0,
            "cpu_percent": 50.0,
            "cpu_seconds": 2.0,
            "interval": 1.0,
        },
    }
    stats = p.decode_agent_message(msgspec.msgpack.encode(raw))
    assert isinstance(stats, p.StatsReply)
    assert (stats.stats.memory, stats.stats.pids_limit, stats.stats.online_cpus) == (0, 0, 0)


@pytest.mark.parametrize(
    ("raw", "missing"),
    [
        ({"op": "forward", "id": 1, "sandbox_id": "sb"}, "port"),
        ({"op": "commit", "id": 1, "sandbox_id": "sb"}, "image"),
        ({"op": "image_warm", "id": 1}, "image"),
        ({"op": "stats", "id": 1}, "sandbox_id"),
    ],
)
def test_requests_without_a_required_field_are_bad_requests_on_their_id(
    raw: dict[str, Any], missing: str
) -> None:
    rejected = p.decode_client_message(msgspec.msgpack.encode(raw))
    assert isinstance(rejected, p.Rejected) and rejected.id == 1
    assert isinstance(rejected.error, BadRequest)
    assert re.match(rf"^invalid '{raw['op']}' request: .*`{missing}`", rejected.error.message)


@pytest.mark.parametrize(
    "message",
    [
        p.PruneImages(id=1, max_percent=99.5, only=["a/*", "b:?"]),
        p.CommitSandbox(
            id=2, sandbox_id="sb", image="reg:5000/me/x:v1", changes=['CMD ["sh"]'], pause=False
        ),
        p.ForwardPort(id=3, sandbox_id="sb", port=65535, address="::1"),
        p.PruneReply(
            id=4,
            result=p.PruneResult(limit=0, total_before=5, total_after=5, freed=0, errors=["é"]),
        ),
        p.ImageReply(
            id=5, image=p.ImageInfo(image_id="x", tags=["a:1", "b:2"], size=1 << 40, containers=3)
        ),
        p.ForwardReply(id=6, bytes_in=0, bytes_out=(1 << 53) + 1),
    ],
    ids=lambda m: type(m).__name__,
)
def test_populated_messages_round_trip(message: p.Message) -> None:
    decode = (
        p.decode_client_message
        if type(message) in p.ClientMessage.__args__
        else p.decode_agent_message
    )
    assert decode(p.encode(message)) == message


# ---------------------------------------------------------------------------- a port forward


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


INFO = p.SandboxInfo(
    sandbox_id="sb-1", container_id="c", image="i", state="running", owner="o", created_at=1.0
)


class EchoAgent:
    """Answers `ForwardPort` by echoing upper-cased bytes, obeying and checking credit.

    It returns the caller's credit a moment after each chunk (a slow consumer), so a caller
    that ignored credit would be caught sending beyond it.
    """

    def __init__(self, *, window: int = 2, refuse: int = 0) -> None:
        self.window = window
        self.refuse = refuse
        self.overruns = 0  # chunks the client sent beyond its credit
        self.cancelled: list[int] = []
        self.received = 0
        self._to_client: dict[int, int] = {}  # credit we granted, not yet used
        self._from_client: dict[int, int] = {}  # credit the client granted us
        self._pending: dict[int, list[bytes]] = {}
        self._ending: set[int] = set()
        self._counts: dict[int, list[int]] = {}

    async def serve(self, stream: Any) -> None:
        channel = FramedChannel(stream, p.decode_client_message)
        await channel.receive()
        await channel.send(
            p.Welcome(protocol=PROTOCOL_VERSION, agent_version="t", host_id="h", cpus=1, memory=1)
        )
        async with anyio.create_task_group() as tg:
            while (message := await channel.receive()) is not None:
                await self._on(channel, tg, message)
            tg.cancel_scope.cancel()

    async def _on(self, channel: FramedChannel[Any], tg: TaskGroup, message: p.Message) -> None:
        if isinstance(message, p.InspectSandbox):
            await channel.send(p.SandboxReply(id=message.id, sandbox=INFO))
        elif isinstance(message, p.ForwardPort):
            if message.port == self.refuse:
                await channel.send(
                    p.ErrorReply(id=message.id, code="not_found", message="nothing listens")
                )
                return
            self._to_client[message.id] = self.window
            self._from_client.setdefault(message.id, 0)
            self._pending[message.id], self._counts[message.id] = [], [0, 0]
            await channel.send(p.StreamCredit(id=message.id, chunks=self.window))
        elif isinstance(message, p.StreamCredit):
            self._from_client[message.id] = self._from_client.get(message.id, 0) + message.chunks
            if message.id in self._pending:
                await self._flush(channel, message.id)
        elif isinstance(message, p.StreamData):
            self._to_client[message.id] -= 1
            if self._to_client[message.id] < 0:
                self.overruns += 1
            if message.end:
                self._ending.add(message.id)
            else:
                self.received += len(message.data)
                self._counts[message.id][0] += len(message.data)
                self._pending[message.id].append(message.data.upper())
                tg.start_soon(self._give_back, channel, message.id)
            await self._flush(channel, message.id)
        elif isinstance(message, p.Cancel):
            self.cancelled.append(message.target)

    async def _give_back(self, channel: FramedChannel[Any], request_id: int) -> None:
        await anyio.sleep(0.002)
        self._to_client[request_id] += 1
        await channel.send(p.StreamCredit(id=request_id, chunks=1))

    async def _flush(self, channel: FramedChannel[Any], request_id: int) -> None:
        queue = self._pending[request_id]
        while queue and self._from_client[request_id] > 0:
            self._from_client[request_id] -= 1
            data = queue.pop(0)
            self._counts[request_id][1] += len(data)
            await channel.send(p.StreamData(id=request_id, data=data))
        if not queue and request_id in self._ending:
            self._ending.discard(request_id)
            await channel.send(p.StreamData(id=request_id, data=b"", end=True))
            bytes_in, bytes_out = self._counts[request_id]
            await channel.send(
                p.ForwardReply(id=request_id, bytes_in=bytes_in, bytes_out=bytes_out)
            )


@asynccontextmanager
async def forwarding(agent: EchoAgent, port: int = 80) -> AsyncIterator[PortForward]:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.serve, server)
        async with (
            open_agent_connection(client, owner="me", name="echo") as conn,
            open_port_forward(conn, "sb-1", port) as forward,
        ):
            yield forward
        tg.cancel_scope.cancel()


async def send_all_and_read(local: SocketStream, payload: bytes) -> bytes:
    answer = bytearray()
    async with anyio.create_task_group() as tg:

        async def write() -> None:
            await local.send(payload)
            await local.send_eof()

        tg.start_soon(write)
        while True:
            try:
                answer += await local.receive()
            except anyio.EndOfStream:
                break
    return bytes(answer)


@pytest.mark.anyio
async def test_forward_carries_bytes_both_ways_and_half_closes() -> None:
    agent = EchoAgent()
    async with forwarding(agent) as forward:
        host, port = forward
        async with await anyio.connect_tcp(host, port) as local:
            assert await send_all_and_read(local, b"hello") == b"HELLO"
        with anyio.fail_after(5):
            while forward.active:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert (forward.connections, forward.bytes_in, forward.bytes_out) == (1, 5, 5)
        assert forward.errors == []
    assert agent.cancelled == []  # it ended with its reply, not abandoned


@pytest.mark.anyio
async def test_forward_never_sends_beyond_its_credit() -> None:
    agent = EchoAgent(window=1)
    payload = bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 7)
    async with forwarding(agent) as forward:
        async with await anyio.connect_tcp(*forward) as local:
            answer = await send_all_and_read(local, payload)
    assert answer == payload.upper()
    assert agent.received == len(payload)
    assert agent.overruns == 0


@pytest.mark.anyio
async def test_a_refused_connection_resets_the_local_client_and_is_kept() -> None:
    async with forwarding(EchoAgent(refuse=80)) as forward:
        async with await anyio.connect_tcp(*forward) as local:
            with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                await local.send(b"x")
                await local.receive()
        with anyio.fail_after(5):
            while not forward.errors:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    (error,) = forward.errors
    assert isinstance(error, NotFound)
    assert str(error) == "nothing listens"


@pytest.mark.anyio
async def test_a_local_client_that_resets_cancels_the_request() -> None:
    agent = EchoAgent()
    async with forwarding(agent) as forward:
        async with await anyio.connect_tcp(*forward) as local:
            await local.send(b"abc")
            assert await local.receive() == b"ABC"
            raw = local.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with anyio.fail_after(5):
            while not agent.cancelled:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert forward.errors == []
