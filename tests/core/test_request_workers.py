"""The agent endpoint's request workers (`_request_run`): a worker that answered a request takes
the next, each request still gets exactly one answer in its own cancel scope, a failing or
cancelled request leaves its worker usable, and a request handed over as the connection
closes still frees what it holds. On both backends."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest

from rock_core import AgentConnection, InternalError, NotFound, TimedOut, open_agent_connection
from rock_core._connection import raise_for_reply
from rock_core._endpoint import Connection, Peer, serve_connection
from rock_core._errors import RockError
from rock_core._protocol import (
    ErrorReply,
    FileReply,
    Message,
    Ping,
    Pong,
    ReadFile,
    Reply,
    Request,
)
from rock_core._request_run import IDLE_WORKERS, RequestWorkers
from rock_core.testing import FakeAgent, memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


class _TaskAgent(FakeAgent):
    """Records the task that ran each request; `ReadFile` of "/raise" raises a bug, "/missing"
    a `NotFound`, "/hold" waits until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[int] = []

    async def handle(self, conn: Connection, request: Request) -> Reply:
        self.tasks.append(anyio.get_current_task().id)
        if isinstance(request, ReadFile):
            if request.path == "/raise":
                raise RuntimeError("a bug")
            if request.path == "/missing":
                raise NotFound("no such thing")
            if request.path == "/stray":  # a cancellation nobody asked for (asyncio)
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await anyio.sleep(1)
            await anyio.sleep_forever()
        return await super().handle(conn, request)


async def test_one_worker_answers_requests_in_turn_and_survives_failures_and_cancels() -> None:
    client, server = memory_stream_pair()
    agent = _TaskAgent()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_connection(server, agent, peer=Peer(os.getuid())))
        async with open_agent_connection(client, owner="t", name="fake") as conn:
            for _ in range(5):
                assert isinstance(await conn.call(Ping(), Pong), Pong)
            with pytest.raises(InternalError) as bug:
                await conn.call(ReadFile(sandbox_id="s", path="/raise"), FileReply)
            assert bug.value.message == "internal agent error in ReadFile: RuntimeError: a bug"
            with pytest.raises(NotFound, match=r"^no such thing$"):
                await conn.call(ReadFile(sandbox_id="s", path="/missing"), FileReply)
            held = ReadFile(sandbox_id="s", path="/hold")
            async with conn.open_request(held) as answers:
                await conn.cancel(held.id)
                with pytest.raises(TimedOut, match=r"^request cancelled$"):
                    async for message in answers:
                        raise_for_reply(message, FileReply, held)
            assert isinstance(await conn.call(Ping(), Pong), Pong)
        tg.cancel_scope.cancel()
    assert len(agent.tasks) == 9
    assert len(set(agent.tasks)) == 1, "each request after the first reused the worker"


async def test_concurrent_requests_each_get_a_worker_and_at_most_the_idle_cap_stays() -> None:
    client, server = memory_stream_pair()
    release = anyio.Event()
    many = IDLE_WORKERS + 8

    arrived = anyio.Event()
    tasks: set[int] = set()

    class _Gate(FakeAgent):
        async def handle(self, conn: Connection, request: Request) -> Reply:
            if isinstance(request, Ping):
                tasks.add(anyio.get_current_task().id)
                if len(tasks) == many:
                    arrived.set()
                await release.wait()
            return await super().handle(conn, request)

    async def ping(conn: AgentConnection) -> None:
        assert isinstance(await conn.call(Ping(), Pong), Pong)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_connection(server, _Gate(), peer=Peer(os.getuid())))
        async with open_agent_connection(client, owner="t", name="fake") as conn:
            async with anyio.create_task_group() as callers:
                for _ in range(many):
                    callers.start_soon(ping, conn)
                await arrived.wait()  # each in a worker of its own
                release.set()
            assert not conn._inboxes  # every one answered
        tg.cancel_scope.cancel()


class _RecordingConnection:
    """A connection that records what running requests sends and finishes."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.finished: list[int] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def send_quietly(self, message: Message) -> None:
        self.sent.append(message)

    def _finish(self, request_id: int) -> RockError | None:
        self.finished.append(request_id)
        return None


class _Held:
    """Answers `Ping` with `Pong`; `ReadFile` waits for `release`."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def handle(self, conn: object, request: Request) -> Reply:
        if isinstance(request, ReadFile):
            await self.release.wait()
            return FileReply(id=request.id, data=b"")
        return Pong(id=request.id, time=0.0)


async def test_workers_beyond_the_idle_cap_end() -> None:
    conn, handler = _RecordingConnection(), _Held()
    many = IDLE_WORKERS + 5
    async with anyio.create_task_group() as tg:
        workers = RequestWorkers(tg, conn, handler)
        for n in range(1, many + 1):
            workers.submit(ReadFile(id=n, sandbox_id="s", path="/p"), anyio.CancelScope())
        assert workers.started == many
        await anyio.wait_all_tasks_blocked()
        handler.release.set()
        await anyio.wait_all_tasks_blocked()
        assert len(conn.sent) == many
        assert workers.idle == IDLE_WORKERS
        workers.submit(Ping(id=many + 1), anyio.CancelScope())
        await anyio.wait_all_tasks_blocked()
        assert workers.started == many  # an idle one took it
        assert sorted(conn.finished) == list(range(1, many + 2))
        tg.cancel_scope.cancel()
    assert all(isinstance(m, FileReply | Pong) for m in conn.sent)


async def test_a_request_handed_over_as_the_connection_closes_is_finished() -> None:
    conn, handler = _RecordingConnection(), _Held()
    async with anyio.create_task_group() as tg:
        workers = RequestWorkers(tg, conn, handler)
        workers.submit(Ping(id=1), anyio.CancelScope())
        await anyio.wait_all_tasks_blocked()
        assert workers.idle == 1
        tg.cancel_scope.cancel()  # the connection closes...
        workers.submit(Ping(id=2), anyio.CancelScope())  # ...as a request is handed over
    assert conn.finished == [1, 2], "what request 2 holds is freed"
    assert workers.idle == 0
    assert not any(isinstance(m, ErrorReply) for m in conn.sent)


async def test_a_worker_that_took_a_stray_cancel_is_not_reused(anyio_backend_name: str) -> None:
    if anyio_backend_name != "asyncio":
        pytest.skip("a stray task.cancel() is asyncio's")
    client, server = memory_stream_pair()
    agent = _TaskAgent()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_connection(server, agent, peer=Peer(os.getuid())))
        async with open_agent_connection(client, owner="t", name="fake") as conn:
            assert isinstance(await conn.call(Ping(), Pong), Pong)
            with pytest.raises(InternalError):
                await conn.call(ReadFile(sandbox_id="s", path="/stray"), FileReply)
            assert isinstance(await conn.call(Ping(), Pong), Pong)
        tg.cancel_scope.cancel()
    first, stray, after = agent.tasks
    assert first == stray, "the worker was reused for the stray request"
    assert after != stray, "a worker whose task still counts a cancellation ended"
