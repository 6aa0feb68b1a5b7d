"""Messages near the frame limit: what fits, what is refused, and that a refusal fails one
request and never the link; the agent's receive budget. In virtual time: a link that waits
for room waits the full `BUDGET_WAIT`, at no cost."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_core import AgentConnection, BadRequest, TransportError, open_agent_connection
from rock_core._channel import ReceiveBudget
from rock_core._endpoint import Connection, Peer, serve_connection
from rock_core._framing import DEFAULT_MAX_FRAME, UNCHARGED, FrameDecoder, frame
from rock_core._protocol import (
    PROTOCOL_VERSION,
    CommandReply,
    CommandResult,
    Done,
    ExecReply,
    ExecResult,
    FileReply,
    Hello,
    Ping,
    Pong,
    ReadFile,
    Reply,
    Request,
    RunCommand,
    WriteFile,
    encode,
    encode_request,
)
from rock_core._schema import MAX_DATA
from rock_core.testing import FakeAgent, MemoryByteStream, memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

BIG_ID = (1 << 63) - 1
LONG_PATH = "/" + "\U0001f600" * 4095  # the longest path, in 4-byte characters


class _BigAgent(FakeAgent):
    """Answers `ReadFile` with `size` bytes; holds each `WriteFile` until `release` is set."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.release = anyio.Event()
        self.writes = 0

    async def handle(self, conn: Connection, request: Request) -> Reply:
        if isinstance(request, ReadFile):
            return FileReply(id=request.id, data=b"x" * self.size)
        if isinstance(request, WriteFile):
            self.writes += 1
            await self.release.wait()
            return Done(id=request.id)
        return await super().handle(conn, request)


@asynccontextmanager
async def connected(
    agent: FakeAgent, budget: ReceiveBudget | None = None
) -> AsyncIterator[AgentConnection]:
    client, server = memory_stream_pair()
    peer = Peer(uid=os.getuid())
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_connection(server, agent, peer=peer, budget=budget))
        async with open_agent_connection(client, owner="tester", name="fake") as conn:
            yield conn


def test_the_largest_messages_fit_a_frame_with_their_envelope() -> None:
    messages = [
        WriteFile(id=BIG_ID, sandbox_id="s" * 100, path=LONG_PATH, data=b"x" * MAX_DATA),
        FileReply(id=BIG_ID, data=b"x" * MAX_DATA),
        CommandReply(
            id=BIG_ID,
            result=CommandResult(
                output=b"x" * MAX_DATA, exit_code=-1, total_bytes=1 << 62, output_path=LONG_PATH
            ),
        ),
    ]
    from rock_agent._execute import STDERR_LIMIT, STDOUT_LIMIT

    stdout, stderr = b"x" * STDOUT_LIMIT, b"x" * STDERR_LIMIT
    messages.append(
        ExecReply(id=BIG_ID, result=ExecResult(stdout=stdout, stderr=stderr, exit_code=1))
    )
    for message in messages:
        assert len(encode(message)) <= DEFAULT_MAX_FRAME - (512 << 10), type(message).__name__


def test_a_file_or_held_output_past_a_reply_is_refused_before_it_is_sent() -> None:
    with pytest.raises(BadRequest) as caught:
        encode_request(WriteFile(id=1, sandbox_id="s", path="/f", data=b"x" * (MAX_DATA + 1)))
    assert caught.value.message.startswith("invalid 'write' request: data b'xxx")
    assert caught.value.message.endswith(f"Expected `bytes` of length <= {MAX_DATA}")
    streamed = RunCommand(id=1, sandbox_id="s", session="m", command="x", output_limit=1 << 30)
    encode_request(streamed)  # streamed output may stay large
    for held in ({"stream": False}, {"interactive": True}):
        with pytest.raises(BadRequest) as caught:
            RunCommand(
                id=1, sandbox_id="s", session="m", command="x", output_limit=MAX_DATA + 1, **held
            )
        assert caught.value.message == (
            f"output_limit {MAX_DATA + 1} is over 15 MiB, the most a reply holds: stream larger"
            " output (on_output) or read all of it from the result's output_path"
        )


async def test_a_reply_too_large_for_a_frame_fails_that_request_only() -> None:
    agent = _BigAgent(DEFAULT_MAX_FRAME)
    async with connected(agent) as conn:
        with pytest.raises(BadRequest) as caught:
            await conn.call(ReadFile(id=conn.next_id(), sandbox_id="s", path="/f"), FileReply)
        size = len(encode(FileReply(id=1, data=b"x" * DEFAULT_MAX_FRAME)))
        assert caught.value.message == (
            f"the answer to this 'read' request cannot be sent: a message of {size} bytes is"
            " over the 16 MiB frame limit: large files go through upload()/download(), large"
            " output through on_output"
        )
        assert isinstance(await conn.call(Ping(id=conn.next_id()), Pong), Pong)
        agent.size = MAX_DATA
        reply = await conn.call(ReadFile(id=conn.next_id(), sandbox_id="s", path="/f"), FileReply)
        assert len(reply.data) == MAX_DATA


async def test_a_frame_waits_for_room_in_the_budget_and_other_links_go_on() -> None:
    agent = _BigAgent(0)
    size = 1 << 20
    budget = ReceiveBudget(size + size // 2)
    async with connected(agent, budget) as conn, anyio.create_task_group() as tg:
        done: list[int] = []

        async def write(n: int) -> None:
            request = WriteFile(id=conn.next_id(), sandbox_id="s", path="/f", data=b"x" * size)
            await conn.call(request, Done)
            done.append(n)

        tg.start_soon(write, 1)
        await agent.wait_received(WriteFile)
        tg.start_soon(write, 2)
        # The second frame is read only as far as the budget allows: the first holds it.
        await anyio.wait_all_tasks_blocked()
        assert (agent.writes, done) == (1, [])
        assert budget.held <= budget.size
        async with connected(agent, budget) as other:  # small frames never wait
            assert isinstance(await other.call(Ping(id=other.next_id()), Pong), Pong)
        agent.release.set()
    assert (agent.writes, sorted(done)) == (2, [1, 2])
    assert budget.held == 0


async def test_a_link_that_waits_too_long_for_room_ends_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = ReceiveBudget(UNCHARGED)
    squatter = FrameDecoder(budget=budget)
    assert squatter.reserve(2 * UNCHARGED)  # another link holds the whole budget
    agent = _BigAgent(0)
    async with connected(agent, budget) as conn:
        request = WriteFile(id=conn.next_id(), sandbox_id="s", path="/f", data=b"x" * (1 << 20))
        began = anyio.current_time()
        with pytest.raises(TransportError) as caught:
            await conn.call(request, Done)
        assert anyio.current_time() - began == pytest.approx(60)  # the default BUDGET_WAIT
        assert caught.value.message == "agent fake closed the connection"
        assert caplog.messages[-1] == (
            "closing a connection that broke the framing: "
            f"waited 60 s for room to receive a frame of {len(frame(encode(request)))} bytes:"
            " the agent"
            f" holds {UNCHARGED} bytes of unfinished frames and requests across its connections"
            " (send large files with upload())"
        )
        async with connected(agent, budget) as other:
            assert isinstance(await other.call(Ping(id=other.next_id()), Pong), Pong)
    squatter.release()
    assert budget.held == 0


async def test_what_requests_hold_goes_back_when_their_link_ends_at_once() -> None:
    budget = ReceiveBudget(64 << 20)
    agent = _BigAgent(0)
    hello = Hello(protocol=PROTOCOL_VERSION, client="t", owner="o")
    peer = Peer(uid=os.getuid())
    writes = [
        WriteFile(id=n, sandbox_id="s", path="/f", data=b"x" * (1 << 20)) for n in range(1, 4)
    ]
    to_agent, agent_reads = anyio.create_memory_object_stream[bytes](math.inf)
    agent_writes, from_agent = anyio.create_memory_object_stream[bytes](math.inf)
    server = MemoryByteStream(agent_writes, agent_reads)
    with from_agent:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_connection(server, agent, peer=peer, budget=budget))
            await to_agent.send(frame(encode(hello)))
            await from_agent.receive()  # the welcome: big frames may come now
            await to_agent.send(b"".join(frame(encode(m)) for m in writes))
            to_agent.close()  # end of stream right after them
    # They ran and were cancelled when the link ended: what they held went back.
    assert (agent.writes, budget.held) == (3, 0)
