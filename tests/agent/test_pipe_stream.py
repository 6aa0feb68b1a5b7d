"""The pipe stream of a local agent's link (`rock_core._pipes`, asyncio only), on real pipes:
the agent's stdio takes a reply at once only while its pipe holds nothing unwritten (once the
reader falls behind, nothing is taken and the awaited send does it); what comes in is handed
out in order, large sends wait for the reader, and closing one end ends the other's stream; a
program reaches its local agent over such pipes."""

from __future__ import annotations

import asyncio
import fcntl
import os

import anyio
import pytest

from rock_agent._stdio import StdioStream
from rock_core import open_agent_connection
from rock_core._hosts import AddressConnector
from rock_core._pipes import PipeStream, open_pipe_stream
from rock_core._protocol import Ping, Pong

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_send_nowait_takes_bytes_only_while_nothing_is_buffered() -> None:
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)  # small, so that it fills
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    stream = StdioStream(None, writer)  # type: ignore[arg-type]  (sends only)
    try:
        assert stream.send_nowait(b"a" * 100)
        assert os.read(read_fd, 200) == b"a" * 100
        # Fill the pipe: what it cannot take stays buffered in the transport.
        assert stream.send_nowait(b"b" * 10_000)
        assert transport.get_write_buffer_size() > 0
        assert not stream.send_nowait(b"c")  # nothing taken while bytes wait
        sender = asyncio.ensure_future(stream.send(b"c"))  # the awaited path, in order
        got = b""
        os.set_blocking(read_fd, False)
        while len(got) < 10_001:
            await asyncio.sleep(0.01)
            try:
                got += os.read(read_fd, 65536)
            except BlockingIOError:
                pass
        await sender
        assert got == b"b" * 10_000 + b"c"
        assert stream.send_nowait(b"d")
        assert os.read(read_fd, 10) == b"d"
        transport.close()
        assert not stream.send_nowait(b"e")  # a closing pipe takes nothing
    finally:
        transport.close()
        os.close(read_fd)


async def test_a_pipe_stream_hands_out_what_came_in_order_and_ends_when_the_peer_closes() -> None:
    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    a = await open_pipe_stream(os.fdopen(a_read, "rb", buffering=0), os.fdopen(a_write, "wb", 0))
    b = await open_pipe_stream(os.fdopen(b_read, "rb", buffering=0), os.fdopen(b_write, "wb", 0))
    try:
        assert a.send_nowait(b"hello ")
        await a.send(b"world")
        got = b""
        while len(got) < 11:
            got += await b.receive(4)  # at most what is asked, the rest stays for later
        assert got == b"hello world"
        await b.send(b"x" * (3 << 20))  # more than a widened pipe holds, in pieces
        got = b""
        while len(got) < 3 << 20:
            got += await a.receive(1 << 20)
        assert got == b"x" * (3 << 20)
        a.close_input()
        with pytest.raises(anyio.EndOfStream):  # the peer closed its end: the stream ends
            await b.receive()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_local_agent_on_asyncio_is_reached_over_pipe_streams(docker_engine: None) -> None:
    async with AddressConnector("local").connect() as stream:
        assert isinstance(stream, PipeStream)
        async with open_agent_connection(stream, owner="pipes", name="local") as conn:
            assert isinstance(await conn.call(Ping(), Pong), Pong)
