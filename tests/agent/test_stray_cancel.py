"""A cancellation that nobody asked for, leaking out of one request's handler (asyncio only: a
library that cancels a task of its own), fails that request alone; the link and every other
request on it go on. Real cancellations (`Cancel`, the link ending) still cancel."""

from __future__ import annotations

import asyncio
import os

import anyio
import anyio.lowlevel
import pytest

from rock_core import InternalError, TimedOut, open_agent_connection
from rock_core._connection import raise_for_reply
from rock_core._endpoint import Connection, Peer, serve_connection
from rock_core._protocol import FileReply, Ping, Pong, ReadFile, Reply, Request
from rock_core.testing import FakeAgent, memory_stream_pair

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # trio has no stray cancellations: only trio itself raises `Cancelled`


class _StrayAgent(FakeAgent):
    """Lets a `CancelledError` out of `ReadFile` of "/stray"; holds "/hold" until cancelled."""

    async def handle(self, conn: Connection, request: Request) -> Reply:
        if isinstance(request, ReadFile) and request.path == "/stray":
            await anyio.lowlevel.checkpoint()
            raise asyncio.CancelledError()
        if isinstance(request, ReadFile):
            await anyio.sleep_forever()
        return await super().handle(conn, request)


async def test_a_stray_cancellation_fails_its_request_only() -> None:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_connection(server, _StrayAgent(), peer=Peer(os.getuid())))
        async with open_agent_connection(client, owner="t", name="fake") as conn:
            held = ReadFile(id=conn.next_id(), sandbox_id="s", path="/hold")
            async with conn.open_request(held) as held_answers:
                stray = ReadFile(id=conn.next_id(), sandbox_id="s", path="/stray")
                with pytest.raises(InternalError) as caught:
                    await conn.call(stray, FileReply)
                assert caught.value.message == (
                    "internal agent error in ReadFile: CancelledError: "
                )
                assert isinstance(await conn.call(Ping(id=conn.next_id()), Pong), Pong)
                await conn.cancel(held.id)  # a real cancellation still is one
                with pytest.raises(TimedOut, match=r"^request cancelled$"):
                    async for message in held_answers:
                        raise_for_reply(message, FileReply, held)
        tg.cancel_scope.cancel()
