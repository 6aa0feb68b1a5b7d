"""`UnixStream`: a unix socket connection that a cancelled receive cannot upset.

The race it exists for (see `rock_core._unix_stream`): a receive cancelled in the very pass of
the event loop in which its socket became readable. On asyncio, anyio's own unix stream then
reports an `InvalidStateError` to the loop's exception handler; these tests make that pass
happen on purpose, and show the error with anyio's stream and none with ours.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from rock_core._unix_stream import UnixStream, connect_unix

pytestmark = pytest.mark.anyio


async def _cancel_in_the_readable_pass(make: Callable[[socket.socket], Any]) -> list[str]:
    """Cancel a pending receive in the loop pass that finds its socket readable."""
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(repr(context)))
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    ours.setblocking(False)
    stream = make(ours)
    try:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def reader() -> None:
                with scope:
                    await stream.receive()

            tg.start_soon(reader)
            await anyio.sleep(0.05)  # the reader waits on the socket
            theirs.send(b"x")
            # One step back in the ready queue: the next pass polls, finds the socket readable
            # and queues its callback after this task, which then cancels the reader.
            await asyncio.sleep(0)
            scope.cancel()
        await anyio.sleep(0.05)
    finally:
        loop.set_exception_handler(old)
        await stream.aclose()
        theirs.close()
    return errors


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_race_is_real_with_anyios_stream() -> None:
    from anyio._backends._asyncio import UNIXSocketStream

    errors = await _cancel_in_the_readable_pass(UNIXSocketStream)
    if not errors:
        pytest.skip("this anyio no longer has the race (then `UnixStream` may go)")
    assert "InvalidStateError" in errors[0]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_receive_cancelled_in_the_readable_pass_reports_nothing() -> None:
    assert await _cancel_in_the_readable_pass(UnixStream) == []


async def test_bytes_both_ways_end_of_stream_and_close(tmp_path: Any) -> None:
    path = str(tmp_path / "s.sock")
    listener = await anyio.create_unix_listener(path)
    got: list[bytes] = []

    async def serve(peer: ByteStream) -> None:
        async with peer:
            while True:
                try:
                    data = await peer.receive()
                except anyio.EndOfStream:
                    return
                got.append(data)
                await peer.send(data.upper())

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        stream = await connect_unix(path)
        big = b"a" * (4 << 20)  # more than the socket buffers: the send waits for room
        async with anyio.create_task_group() as io:
            io.start_soon(stream.send, big)
            back = b""
            while len(back) < len(big):
                back += await stream.receive(1 << 20)
        assert back == big.upper()
        await stream.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()
        await stream.aclose()  # twice is fine
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"late")
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
        tg.cancel_scope.cancel()
    assert b"".join(got) == big


async def test_a_close_wakes_a_waiting_receive() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stream = UnixStream(ours)
    outcome: list[str] = []

    async def reader() -> None:
        try:
            await stream.receive()
        except anyio.ClosedResourceError:
            outcome.append("closed")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.05)
            await stream.aclose()
    theirs.close()
    assert outcome == ["closed"]


async def test_a_reset_peer_is_a_broken_stream() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stream = UnixStream(ours)
    theirs.close()
    with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
        for _ in range(64):  # the kernel reports the closed peer on a send or as end of stream
            await stream.send(b"x" * 65536)
            await stream.receive()
    await stream.aclose()


async def test_connecting_where_nothing_listens_is_an_oserror(tmp_path: Any) -> None:
    with pytest.raises(OSError):
        await connect_unix(str(tmp_path / "nobody.sock"))


async def test_max_bytes_is_checked() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stream = UnixStream(ours)
    with pytest.raises(ValueError):
        await stream.receive(0)
    await stream.aclose()
    theirs.close()


async def test_a_full_backlog_is_waited_out_not_returned_unconnected(tmp_path: Any) -> None:
    path = str(tmp_path / "busy.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)  # a backlog of one: later connects get EAGAIN until one is accepted
    server.setblocking(False)
    streams: list[UnixStream] = []
    accepted: list[socket.socket] = []

    async def accept_later() -> None:
        await anyio.sleep(0.3)
        while len(accepted) < 4:
            try:
                accepted.append(server.accept()[0])
            except BlockingIOError:
                await anyio.sleep(0.01)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept_later)
            for _ in range(4):
                streams.append(await connect_unix(path))
    for stream, peer in zip(streams, accepted, strict=True):
        await stream.send(b"ping")  # every stream is connected (no ENOTCONN)
        assert peer.recv(4) == b"ping"
        await stream.aclose()
        peer.close()
    server.close()


async def test_a_backlog_that_never_clears_is_an_oserror(tmp_path: Any) -> None:
    path = str(tmp_path / "stuck.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    held = []
    with pytest.raises(OSError):
        for _ in range(8):
            held.append(await connect_unix(path, patience=0.2))
    for stream in held:
        await stream.aclose()
    server.close()
