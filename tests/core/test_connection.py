"""The core's agent link against `FakeAgent`, in virtual time (asyncio runs it in the
integration tests, against a real agent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_core import (
    PROTOCOL_VERSION,
    AgentConnection,
    AlreadyExists,
    BadRequest,
    EngineUnavailable,
    ImageNotFound,
    ProtocolError,
    RockError,
    SandboxNotFound,
    SandboxSpec,
    TransportError,
    open_agent_connection,
)
from rock_core._channel import FramedChannel
from rock_core._endpoint import Connection
from rock_core._protocol import (
    AgentMessage,
    Cancel,
    ClientMessage,
    CreateSandbox,
    Done,
    ErrorReply,
    Hello,
    InspectSandbox,
    Ping,
    Pong,
    RemoveSandbox,
    Request,
    RunCommand,
    SandboxReply,
    Welcome,
    decode_agent_message,
)
from rock_core.testing import FakeAgent, memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connected(agent: FakeAgent, owner: str = "tester") -> AsyncIterator[AgentConnection]:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.serve, server)
        async with open_agent_connection(client, owner=owner, name="fake") as conn:
            yield conn


def blocker() -> tuple[Callable[[str], Awaitable[None]], anyio.Event, anyio.Event]:
    """A start latency that reports when it began and waits until released."""
    started, release = anyio.Event(), anyio.Event()

    async def latency(sandbox_id: str) -> None:
        started.set()
        await release.wait()

    return latency, started, release


async def test_handshake_returns_the_welcome_fields() -> None:
    agent = FakeAgent(host_id="h1", cpus=3.5, memory=1 << 33, images=["b:1", "a:1"])
    async with connected(agent, owner="me") as conn:
        welcome = conn.welcome
        assert welcome.protocol == PROTOCOL_VERSION
        assert (welcome.host_id, welcome.cpus, welcome.memory) == ("h1", 3.5, 1 << 33)
        assert welcome.images == ["a:1", "b:1"]
        assert not conn.closed
    hello = agent.received[0]
    assert isinstance(hello, Hello)
    assert (hello.protocol, hello.owner, hello.client) == (PROTOCOL_VERSION, "me", "rock_core")


async def test_agent_with_another_version_is_a_protocol_error_naming_both() -> None:
    other = PROTOCOL_VERSION + 41
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(FakeAgent(protocol=other).serve, server)
        with pytest.raises(ProtocolError) as info:
            async with open_agent_connection(client, owner="me", name="fake"):
                pytest.fail("the handshake should have failed")
    assert str(info.value) == (
        f"agent fake speaks protocol {other}; this core speaks {PROTOCOL_VERSION}"
    )


async def test_agent_refuses_a_client_with_another_version() -> None:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(FakeAgent().serve, server)
        channel: FramedChannel[AgentMessage] = FramedChannel(client, decode_agent_message)
        await channel.send(Hello(protocol=PROTOCOL_VERSION + 1, client="old", owner="me"))
        reply = await channel.receive()
        assert isinstance(reply, ErrorReply)
        assert reply.code == ProtocolError.code
        assert reply.message == (
            f"client speaks protocol {PROTOCOL_VERSION + 1}; agent fake speaks {PROTOCOL_VERSION}"
        )
        assert await channel.receive() is None  # and it hangs up
        await channel.aclose()


async def test_a_hello_the_agent_would_refuse_is_never_sent() -> None:
    client, server = memory_stream_pair()
    agent = FakeAgent()
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.serve, server)
        with pytest.raises(
            BadRequest, match=r"^invalid 'hello' request: owner '': Expected `str` of length >= 1$"
        ):
            async with open_agent_connection(client, owner="", name="fake"):
                pytest.fail("the handshake should have failed")
        tg.cancel_scope.cancel()
    assert agent.received == []


class EngineDown(FakeAgent):
    async def accept(self, conn: Connection) -> Welcome:
        raise EngineUnavailable("no Docker engine answers at unix:///nowhere")


async def test_agent_error_in_the_handshake_is_raised_as_its_class() -> None:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(EngineDown().serve, server)
        with pytest.raises(
            EngineUnavailable, match=r"^no Docker engine answers at unix:///nowhere$"
        ):
            async with open_agent_connection(client, owner="me", name="fake"):
                pytest.fail("the handshake should have failed")


async def test_agent_closing_mid_request_fails_the_waiting_call() -> None:
    latency, started, _release = blocker()
    agent = FakeAgent(start_latency=latency)
    spec = SandboxSpec(image="img")
    async with connected(agent) as conn:
        outcome: list[BaseException] = []

        async def create() -> None:
            try:
                await conn.call(
                    CreateSandbox(id=conn.next_id(), sandbox_id="sb", spec=spec), SandboxReply
                )
            except RockError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await started.wait()
            await agent.disconnect()
        assert len(outcome) == 1
        assert type(outcome[0]) is TransportError
        assert str(outcome[0]) == "agent fake closed the connection"
        assert conn.closed
        # Later requests fail at once with the same error.
        with pytest.raises(TransportError, match=r"^agent fake closed the connection$"):
            await conn.call(Ping(id=conn.next_id()), Pong)


def create(conn: AgentConnection, sandbox_id: str, image: str = "img", cpus: float = 1) -> Request:
    return CreateSandbox(
        id=conn.next_id(), sandbox_id=sandbox_id, spec=SandboxSpec(image=image, cpus=cpus)
    )


async def test_error_replies_become_their_error_classes() -> None:
    agent = FakeAgent(host_id="h1", fail_images={"bad:img"})
    async with connected(agent) as conn:
        with pytest.raises(SandboxNotFound, match=r"^no sandbox 'nope' on host h1$"):
            await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id="nope"), Done)
        with pytest.raises(SandboxNotFound, match=r"^no sandbox 'nope' on host h1$"):
            await conn.call(InspectSandbox(id=conn.next_id(), sandbox_id="nope"), SandboxReply)
        with pytest.raises(
            ImageNotFound,
            match=r"^image 'bad:img' is not on this host and could not be pulled$",
        ):
            await conn.call(create(conn, "sb-bad", image="bad:img"), SandboxReply)
        first = await conn.call(create(conn, "sb-1"), SandboxReply)
        again = await conn.call(create(conn, "sb-1"), SandboxReply)
        assert again.sandbox == first.sandbox  # same spec: the same sandbox
        with pytest.raises(
            AlreadyExists, match=r"^sandbox sb-1 already exists with a different spec$"
        ):
            await conn.call(create(conn, "sb-1", cpus=2), SandboxReply)
        with pytest.raises(
            BadRequest, match=r"^invalid 'create' request: spec.cpus 0: Expected `float` >= 0.01$"
        ):
            await conn.call(create(conn, "sb-2", cpus=0), SandboxReply)
        run = RunCommand(id=conn.next_id(), sandbox_id="sb-1", session="s", command="ls")
        with pytest.raises(BadRequest, match=r"^this fake agent cannot handle RunCommand$") as info:
            await conn.call(run, Done)
        assert type(info.value) is BadRequest


async def test_unexpected_reply_type_is_a_protocol_error() -> None:
    async with connected(FakeAgent()) as conn:
        with pytest.raises(
            ProtocolError, match=r"^agent answered Ping with Pong, expected SandboxReply$"
        ):
            await conn.call(Ping(id=conn.next_id()), SandboxReply)


async def test_a_cancelled_caller_sends_cancel_to_the_agent() -> None:
    latency, started, _release = blocker()
    agent = FakeAgent(start_latency=latency)
    async with connected(agent) as conn:
        request = create(conn, "sb-slow")
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.call, request, SandboxReply)
                await started.wait()
                scope.cancel()
        cancel = await agent.wait_received(Cancel)
        assert cancel.target == request.id
        assert "sb-slow" not in agent.sandboxes
        # The link is still good.
        assert isinstance(await conn.call(Ping(id=conn.next_id()), Pong), Pong)


async def test_a_hundred_concurrent_pings_are_all_answered() -> None:
    async with connected(FakeAgent()) as conn:
        answered: dict[int, Pong] = {}

        async def ping() -> None:
            request = Ping(id=conn.next_id())
            answered[request.id] = await conn.call(request, Pong)

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(ping)
        assert len(answered) == 100
        assert all(pong.id == request_id for request_id, pong in answered.items())


class Stamping(FakeAgent):
    """Records the endpoint's `last_seen` of its connection at the handshake and at each ping."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    async def accept(self, conn: Connection) -> Welcome:
        self.stamps.append(conn.last_seen)
        return await super().accept(conn)

    def heard(self, conn: Connection, message: ClientMessage) -> None:
        super().heard(conn, message)
        if isinstance(message, Ping):
            self.stamps.append(conn.last_seen)


async def test_the_endpoint_stamps_what_it_hears_on_the_runtimes_clock() -> None:
    agent = Stamping()
    async with connected(agent) as conn:
        sent = [anyio.current_time()]  # the hello, answered in no (virtual) time
        for pause in (100.0, 50.0):
            await anyio.sleep(pause)
            sent.append(anyio.current_time())
            await conn.call(Ping(id=conn.next_id()), Pong)
    assert agent.stamps == sent
    assert sent[2] - sent[0] == 150.0
