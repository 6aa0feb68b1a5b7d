"""`rock_core._pipe_read`: a pipe read in the pieces asyncio gets, as an anyio receive stream.

Real pipes (`os.pipe`), asyncio only (the stream is asyncio's: under trio a child's output stays
anyio's own). Every byte arrives once and in order, across pauses, slices and cancellations.
"""

from __future__ import annotations

import hashlib
import os
import threading

import anyio
import pytest

from rock_core._pipe_read import HIGH, PipeReceiveStream, open_pipe_receive

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def write_all(fd: int, data: bytes) -> None:
    """Write `data` to `fd` in 1 MiB writes, then close it (a thread: it blocks when full)."""
    with os.fdopen(fd, "wb", buffering=0) as pipe:
        view = memoryview(data)
        while view:
            view = view[pipe.write(view[: 1 << 20]) or 0 :]


async def read_all(stream: PipeReceiveStream, max_bytes: int = 1 << 20) -> bytes:
    pieces = []
    while True:
        try:
            pieces.append(await stream.receive(max_bytes))
        except anyio.EndOfStream:
            return b"".join(pieces)


async def test_every_byte_arrives_in_order_past_the_pause_mark() -> None:
    data = os.urandom(3 * HIGH + 12345)  # more than the reader holds before it pauses
    read_fd, write_fd = os.pipe()
    stream = await open_pipe_receive(read_fd)
    writer = threading.Thread(target=write_all, args=(write_fd, data))
    writer.start()
    await anyio.sleep(0.2)  # the writer fills the pipe and the reader's pieces: reading pauses
    got = await read_all(stream)
    writer.join()
    await stream.aclose()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


async def test_max_bytes_slices_a_piece_and_keeps_the_rest() -> None:
    read_fd, write_fd = os.pipe()
    stream = await open_pipe_receive(read_fd)
    os.write(write_fd, b"0123456789")
    os.close(write_fd)
    assert await stream.receive(3) == b"012"
    assert await stream.receive(4) == b"3456"
    assert await read_all(stream) == b"789"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    await stream.aclose()


async def test_a_cancelled_receive_loses_nothing() -> None:
    read_fd, write_fd = os.pipe()
    stream = await open_pipe_receive(read_fd)
    with anyio.move_on_after(0.05) as scope:
        await stream.receive()  # nothing written yet: waits, then is cancelled
    assert scope.cancelled_caught
    os.write(write_fd, b"after")
    os.close(write_fd)
    assert await read_all(stream) == b"after"
    await stream.aclose()


async def test_receive_after_aclose_is_a_closed_resource() -> None:
    read_fd, write_fd = os.pipe()
    stream = await open_pipe_receive(read_fd)
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    os.close(write_fd)
