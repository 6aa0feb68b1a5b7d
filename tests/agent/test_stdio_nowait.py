"""The agent's stdio stream takes a reply at once only while its pipe holds nothing unwritten;
once the reader falls behind, nothing is taken and the awaited send does it (asyncio only: the
agent's stdio is asyncio pipes). A real pipe, made small so it fills."""

from __future__ import annotations

import asyncio
import fcntl
import os

import pytest

from rock_agent._stdio import StdioStream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_send_nowait_takes_bytes_only_while_nothing_is_buffered() -> None:
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
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
