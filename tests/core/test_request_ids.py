"""Request ids are the connection's: call sites build requests without one, and the connection
sets a fresh one on each request it sends. In virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest

from rock_core import AgentConnection, BadRequest, open_agent_connection
from rock_core.protocol import CreateSandbox as Create
from rock_core.protocol import (
    Ping,
    Pong,
    Rejected,
    Request,
    SandboxSpec,
    decode_client_message,
    encode_request,
)
from rock_core.protocol import SandboxReply as Created
from rock_core.testing import FakeAgent, memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connected(agent: FakeAgent) -> AsyncIterator[AgentConnection]:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.serve, server)
        async with open_agent_connection(client, owner="tester", name="fake") as conn:
            yield conn


def request_ids(agent: FakeAgent) -> list[int]:
    return [m.id for m in agent.received if isinstance(m, Request)]


async def test_the_connection_numbers_requests_built_without_an_id() -> None:
    agent = FakeAgent(host_id="h")
    async with connected(agent) as conn:
        ping = Ping()
        assert ping.id == 0  # unset: the connection's to fill in
        await conn.call(ping, Pong)
        assert ping.id == 1
        await conn.call(Create(sandbox_id="sb", spec=SandboxSpec(image="i")), Created)
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(conn.call, Ping(), Pong)
    assert request_ids(agent) == [1, 2, 3, 4, 5, 6, 7]


async def test_a_request_sent_again_gets_a_fresh_id() -> None:
    agent = FakeAgent(host_id="h")
    async with connected(agent) as conn:
        ping = Ping(id=41)  # a caller's id is replaced too: ids are the connection's alone
        await conn.call(ping, Pong)
        await conn.call(ping, Pong)
    assert request_ids(agent) == [1, 2]


def test_a_request_without_an_id_is_refused_on_both_sides() -> None:
    with pytest.raises(BadRequest, match=r"^invalid 'ping' request: id 0: Expected `int` >= 1$"):
        encode_request(Ping())  # never sent with no id
    rejected = decode_client_message(msgspec.msgpack.encode({"op": "ping"}))
    assert isinstance(rejected, Rejected) and rejected.id == 0
    assert isinstance(rejected.error, BadRequest)
    assert rejected.error.message == "invalid 'ping' request: Object missing required field `id`"
