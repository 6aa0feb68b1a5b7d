"""A port forward's conversation with a scripted agent (credit both ways, half-close, refusal,
cancel), on asyncio and trio. Its local side is real TCP, so it is no test of the core alone."""

from __future__ import annotations

import socket
import struct

import anyio
import pytest
from anyio.abc import SocketAttribute

from rock_core import NotFound
from rock_core._channel import CHUNK_SIZE

from ._echo_agent import EchoAgent, forwarding, send_all_and_read


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


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
