"""One conformance suite for the transport seam (`rock_core.ByteStream`), run against every
transport: the in-memory fake of `rock_core.testing`, a child process's pipes (the local
agent's), a unix socket (a socket agent's) and an SSH stream-local forward through the real
loopback sshd. On asyncio and trio. The fake cannot drift from the real things.

The peer is an echo server that reads an 8-byte length, echoes that many bytes back as they
come, then closes its end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest
import sniffio
from anyio.abc import ByteStream as AnyioByteStream

from rock_core import ByteStream, SshOptions
from rock_core._addresses import parse
from rock_core._channel import SplitStream
from rock_core._pipes import open_pipe_stream
from rock_core._ssh import open_ssh_stream
from rock_core.testing import memory_stream_pair

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
HEADER = 8

ECHO_PROCESS = """
import sys
src, dst = sys.stdin.buffer, sys.stdout.buffer
n = int.from_bytes(src.read(8), "big")
while n > 0:
    chunk = src.read1(min(n, 65536))
    if not chunk:
        break
    dst.write(chunk)
    dst.flush()
    n -= len(chunk)
"""

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def receive_exactly(stream: ByteStream | AnyioByteStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.receive(size - len(data))
    return data


async def echo(stream: ByteStream | AnyioByteStream) -> None:
    """The peer: echo a length-prefixed payload as it arrives, then close."""
    remaining = int.from_bytes(await receive_exactly(stream, HEADER), "big")
    while remaining > 0:
        data = await stream.receive(min(remaining, 65536))
        await stream.send(data)
        remaining -= len(data)
    await stream.aclose()


@asynccontextmanager
async def memory() -> AsyncIterator[ByteStream]:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(echo, server)
        yield client


@asynccontextmanager
async def pipe() -> AsyncIterator[ByteStream]:
    # Spawned as the local agent is (`_hosts._open_local`): on asyncio its pipes are read and
    # written from the loop (`_pipes`), elsewhere through anyio's process streams.
    command = [sys.executable, "-c", ECHO_PROCESS]
    if sniffio.current_async_library() != "asyncio":
        async with await anyio.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            yield SplitStream(process.stdout, process.stdin)
        return
    to_child, from_child = os.pipe(), os.pipe()
    async with await anyio.open_process(
        command, stdin=to_child[0], stdout=from_child[1]
    ) as process:
        os.close(to_child[0])
        os.close(from_child[1])
        stream = await open_pipe_stream(
            os.fdopen(from_child[0], "rb", buffering=0), os.fdopen(to_child[1], "wb", buffering=0)
        )
        try:
            yield stream
        finally:
            await stream.aclose()


@asynccontextmanager
async def unix_listener() -> AsyncIterator[str]:
    path = f"/tmp/rock-conformance-{secrets.token_hex(4)}.sock"
    listener = await anyio.create_unix_listener(path)
    try:
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            yield path
            tg.cancel_scope.cancel()
    finally:
        Path(path).unlink(missing_ok=True)


@asynccontextmanager
async def unix() -> AsyncIterator[ByteStream]:
    async with unix_listener() as path:
        yield await anyio.connect_unix(path)


@asynccontextmanager
async def ssh() -> AsyncIterator[ByteStream]:
    options = SshOptions(
        known_hosts=str(SSH_DIR / "known_hosts"), client_keys=[str(SSH_DIR / "id")]
    )
    async with unix_listener() as path:
        address = parse(f"ssh://root@127.0.0.1:2222?socket={path}")
        async with open_ssh_stream(address, options) as stream:
            yield stream


TRANSPORTS: dict[str, Callable[[], AbstractAsyncContextManager[ByteStream]]] = {
    "memory": memory,
    "pipe": pipe,
    "unix": unix,
    "ssh": ssh,
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(
    request: pytest.FixtureRequest,
) -> Callable[[], AbstractAsyncContextManager[ByteStream]]:
    return TRANSPORTS[request.param]


async def exchange(stream: ByteStream, payload: bytes, chunk: int) -> bytes:
    """Send `payload` in `chunk`-sized pieces while reading the echo; return what came back."""
    received = bytearray()

    async def sender() -> None:
        await stream.send(len(payload).to_bytes(HEADER, "big"))
        for offset in range(0, len(payload), chunk):
            await stream.send(payload[offset : offset + chunk])

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        while len(received) < len(payload):
            received += await stream.receive()
    return bytes(received)


async def test_bytes_arrive_in_order_and_intact(
    transport: Callable[[], AbstractAsyncContextManager[ByteStream]],
) -> None:
    payload = os.urandom(4 << 20)
    async with transport() as stream:
        with anyio.fail_after(60):
            assert await exchange(stream, payload, 100_003) == payload
        await stream.aclose()


async def test_receive_returns_at_most_max_bytes_and_never_nothing(
    transport: Callable[[], AbstractAsyncContextManager[ByteStream]],
) -> None:
    async with transport() as stream:
        await stream.send((1000).to_bytes(HEADER, "big") + b"x" * 1000)
        got = 0
        with anyio.fail_after(30):
            while got < 1000:
                data = await stream.receive(7)
                assert 0 < len(data) <= 7
                got += len(data)
        await stream.aclose()


async def test_the_peer_closing_ends_the_stream(
    transport: Callable[[], AbstractAsyncContextManager[ByteStream]],
) -> None:
    async with transport() as stream:
        with anyio.fail_after(30):
            assert await exchange(stream, b"last words", 4) == b"last words"
            with pytest.raises(anyio.EndOfStream):
                while True:
                    await stream.receive()
        await stream.aclose()
