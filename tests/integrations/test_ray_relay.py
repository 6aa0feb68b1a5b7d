"""The Ray transport's two halves without Ray: the relay actor's class on a real unix socket
(as it runs in a worker, on asyncio), and the core's `RayStream` over a fake actor whose calls
are ``concurrent.futures`` futures completed from another thread (on asyncio and trio).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import BadRequest, TransportError
from rock_sdk.integrations import _ray_relay, _ray_stream
from rock_sdk.integrations._ray_relay import RayAgentRelay
from rock_sdk.integrations._ray_stream import RayAgentConnector, RayStream, wait_future


@asynccontextmanager
async def agent_socket(folder: Path) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """A stand-in agent at ``folder/host/agent.sock`` that answers each write in capitals."""
    (folder / "host").mkdir(mode=0o700)
    peers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        while data := await reader.read(1024):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(folder / "host" / "agent.sock"))
    try:
        yield peers
    finally:
        server.close()


ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the actor's loop


@pytest.mark.anyio
@ASYNCIO_ONLY
async def test_the_relay_hands_a_lost_reply_out_again(tmp_path: Path) -> None:
    async with agent_socket(tmp_path) as peers:
        relay = RayAgentRelay("host", str(tmp_path), None, 5.0)
        stream = await relay.open()
        await relay.send(stream, 2, b"llo")  # came before its turn: kept until then
        await relay.send(stream, 0, b"he")
        await relay.send(stream, 0, b"he")  # asked twice: written once
        assert await relay.receive(stream, 0, 3, 1.0) == (b"HEL", False)
        # The caller of that receive was cancelled: it asks for offset 0 again.
        assert await relay.receive(stream, 0, 3, 1.0) == (b"HEL", False)
        assert await relay.receive(stream, 3, 64, 1.0) == (b"LO", False)
        assert (await relay.describe())["resent"] == 1
        assert await relay.receive(stream, 5, 64, 0.05) == (b"", False)  # nothing yet
        with pytest.raises(RuntimeError, match="offset 2 asked"):
            await relay.receive(stream, 2, 64, 0.05)
        peers[0].close()
        assert await relay.receive(stream, 5, 64, 1.0) == (b"", True)
        await relay.close(stream)
        await relay.close(stream)  # closing twice is no error
        with pytest.raises(RuntimeError, match=f"stream {stream} is closed"):
            await relay.send(stream, 5, b"x")


@pytest.mark.anyio
@ASYNCIO_ONLY
async def test_a_restarted_relay_never_hands_an_old_stream_id_to_a_new_caller(
    tmp_path: Path,
) -> None:
    async with agent_socket(tmp_path) as peers:
        before = RayAgentRelay("host", str(tmp_path), None, 5.0)
        old = await before.open()
        # Ray restarts the actor: a new instance, its streams gone. Another program opens
        # first; the old program's calls, still naming `old`, must not reach that stream.
        after = RayAgentRelay("host", str(tmp_path), None, 5.0)
        new = await after.open()
        assert new != old
        with pytest.raises(RuntimeError, match=f"stream {old} is closed"):
            await after.send(old, 0, b"intruder")
        await after.send(new, 0, b"mine")
        assert await after.receive(new, 0, 64, 1.0) == (b"MINE", False)
        ids = {await after.open() for _ in range(50)}
        assert len(ids) == 50 and new not in ids
        for stream in (*ids, new):
            await after.close(stream)
        await before.close(old)
        assert peers


@pytest.mark.anyio
@ASYNCIO_ONLY
async def test_a_stream_nobody_calls_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ray_relay, "STALE", 0.2)
    async with agent_socket(tmp_path) as peers:
        relay = RayAgentRelay("host", str(tmp_path), None, 5.0)
        stream = await relay.open()
        await relay.send(stream, 0, b"x")
        with anyio.fail_after(10):
            while (await relay.describe())["streams"]:  # noqa: ASYNC110 (the sweeper's timer)
                await anyio.sleep(0.05)
        with pytest.raises(RuntimeError, match="is closed"):
            await relay.receive(stream, 0, 64, 0.1)
        assert peers[0].is_closing() or peers[0].transport.is_closing()


@pytest.mark.anyio
@ASYNCIO_ONLY
async def test_an_agent_that_does_not_start_is_a_clear_error(tmp_path: Path) -> None:
    relay = RayAgentRelay("host", str(tmp_path), ["false"], 5.0)
    with pytest.raises(RuntimeError, match=r"false ensure --socket .* failed with status 1"):
        await relay.open()


class FakeRayError(Exception):
    pass


class FakeActorError(FakeRayError):
    pass


class FakeTaskError(FakeRayError):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class FakeRay:
    joined = True

    class exceptions:  # the shape of ray.exceptions
        RayError = FakeRayError
        RayActorError = FakeActorError
        RayTaskError = FakeTaskError

    @classmethod
    def is_initialized(cls) -> bool:
        return cls.joined


class Method:
    def __init__(self, answer: Callable[..., Any], delay: float = 0.01) -> None:
        self.answer = answer
        self.delay = delay
        self.refuse: Exception | None = None  # raised by `remote` itself, as Ray may

    def remote(self, *args: Any) -> Any:
        if self.refuse is not None:
            raise self.refuse
        future: Future[Any] = Future()

        def complete() -> None:
            try:
                future.set_result(self.answer(*args))
            except Exception as exc:
                future.set_exception(exc)

        threading.Timer(self.delay, complete).start()  # as Ray does: from a thread of its own
        return type("Ref", (), {"future": lambda _self: future})()


class FakeActor:
    """An actor that hands out b"abcdef" in 2-byte chunks, by offset, then end of stream."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.sent: list[tuple[int, bytes]] = []
        self.dead = False
        self.receive = Method(self._receive)
        self.send = Method(self._send)
        self.close = Method(lambda stream: None)

    def _receive(self, stream: int, offset: int, max_bytes: int, wait: float) -> Any:
        self.asked.append(offset)
        if self.dead:
            raise FakeActorError("The actor died unexpectedly before finishing this task.")
        data = b"abcdef"[offset : offset + 2]
        return data, not data

    def _send(self, stream: int, offset: int, data: bytes) -> None:
        self.sent.append((offset, data))
        if data == b"bad":
            raise FakeTaskError(RuntimeError("stream 1 is closed"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_the_stream_asks_by_offset_and_maps_ray_errors() -> None:
    actor = FakeActor()
    stream = RayStream(FakeRay, actor, 1, "ray://n")
    assert await stream.receive() == b"ab"
    with anyio.move_on_after(0.001):  # cancelled before the reply: asked again, nothing lost
        await stream.receive()
    assert await stream.receive() == b"cd"
    assert await stream.receive() == b"ef"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    assert actor.asked == [0, 2, 2, 4, 6]
    await stream.send(b"fine")
    for _ in range(20):
        await stream.send(b"12")
    await stream.drain()
    # Every send went out once, at its offset (in whatever order the calls ran).
    pairs = [(4 + 2 * i, b"12") for i in range(20)]
    assert sorted(actor.sent) == [(0, b"fine"), *pairs]
    await stream.send(b"bad")  # not waited for: its failure comes with the next wait
    with pytest.raises(TransportError, match="ray://n: the actor call failed: stream 1 is closed"):
        await stream.drain()
    assert sorted(actor.sent)[-1] == (44, b"bad")
    actor.dead = True
    with pytest.raises(TransportError, match="ray://n: its agent actor is gone or unreachable"):
        await stream.receive()
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")


@pytest.mark.anyio
async def test_a_failed_send_is_never_lost_to_a_cancelled_wait_and_breaks_the_stream() -> None:
    actor = FakeActor()
    actor.send = Method(actor._send, delay=0.3)
    stream = RayStream(FakeRay, actor, 1, "ray://n")
    await stream.send(b"bad")  # fails on the actor, later
    for _ in range(7):
        await stream.send(b"ok")
    with anyio.move_on_after(0.05) as scope:  # the window is full: waits for "bad", cancelled
        await stream.send(b"next")
    assert scope.cancelled_caught
    with pytest.raises(TransportError, match="the actor call failed: stream 1 is closed"):
        await stream.send(b"next")
    # Every later send fails too: the bytes after a gap would never be written.
    with pytest.raises(TransportError, match="an earlier send failed"):
        await stream.send(b"after")
    with pytest.raises(TransportError, match="an earlier send failed"):
        await stream.drain()
    await stream.aclose()


@pytest.mark.anyio
async def test_ray_failing_a_call_or_gone_from_the_process_is_a_transport_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    actor = FakeActor()
    stream = RayStream(FakeRay, actor, 1, "ray://n")
    # Ray raises a plain Exception when it cannot submit a call (an actor of another cluster).
    actor.receive.refuse = actor.send.refuse = Exception("Failed to submit task to actor")
    with pytest.raises(TransportError, match="cannot call its agent actor: Failed to submit"):
        await stream.receive()
    with pytest.raises(TransportError, match="cannot call its agent actor: Failed to submit"):
        await stream.send(b"x")
    actor.receive.refuse = actor.send.refuse = None
    monkeypatch.setattr(FakeRay, "joined", False)  # ray.shutdown() ran (the cluster closed)
    with pytest.raises(TransportError, match="has left its Ray cluster"):
        await stream.receive()
    with pytest.raises(TransportError, match="has left its Ray cluster"):
        await stream.send(b"x")
    await stream.aclose()  # best effort: no error
    assert actor.asked == [] and actor.sent == []


@pytest.mark.anyio
async def test_a_cancelled_connect_does_not_wait_for_a_blocked_ray_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    monkeypatch.setattr("rock_sdk.integrations._ray_stream.import_ray", lambda: FakeRay)
    connector = RayAgentConnector("ab" * 28)
    # Ray's control store is gone: the lookup blocks (for minutes, in Ray).
    monkeypatch.setattr(connector, "_actor", lambda ray: release.wait(60))
    timer = threading.Timer(30, release.set)  # the test ends even without the fix
    timer.start()
    with anyio.move_on_after(0.1):
        async with connector.connect():
            pass
    assert not release.is_set()  # the cancel did not wait for the blocked thread
    release.set()
    timer.cancel()


@pytest.mark.anyio
async def test_a_receive_never_returns_more_than_it_asks_for() -> None:
    # A chunk handed out again after a cancelled call is as long as that call asked for; the
    # channel's receive budget counts on getting no more than it asks for now.
    actor = FakeActor()
    stream = RayStream(FakeRay, actor, 1, "ray://n")
    assert await stream.receive(1) == b"a"
    assert await stream.receive(5) == b"b"  # the rest, without a call
    assert await stream.receive(1) == b"c"
    assert await stream.receive() == b"d"
    assert await stream.receive() == b"ef"
    assert actor.asked == [0, 2, 4]
    await stream.aclose()


@pytest.mark.anyio
async def test_large_sends_wait_for_the_oldest_before_they_pass_the_byte_window() -> None:
    # The relay keeps at most MAX_EARLY bytes of sends that came out of turn: the stream keeps
    # fewer bytes in flight than that, whatever the size of its sends.
    actor = FakeActor()
    stream = RayStream(FakeRay, actor, 1, "ray://n")
    big = bytes(_ray_stream.WINDOW_BYTES // 2 + 1)
    await stream.send(big)  # alone in flight: not waited for
    await stream.send(big)  # both would pass the window: the first is answered before
    assert [offset for offset, _ in actor.sent] == [0]
    await stream.drain()
    assert [offset for offset, _ in actor.sent] == [0, len(big)]
    assert _ray_stream.WINDOW_BYTES < _ray_relay.MAX_EARLY
    await stream.aclose()


@pytest.mark.anyio
async def test_waiting_on_a_future_from_another_thread() -> None:
    future: Future[int] = Future()
    threading.Timer(0.02, future.set_result, (7,)).start()
    assert await wait_future(future) == 7
    late: Future[int] = Future()
    with anyio.move_on_after(0.01):
        await wait_future(late)
    late.set_result(1)  # completing a future nobody waits for any more is harmless


def test_bad_connector_arguments_are_bad_requests() -> None:
    node = "ab" * 28
    for kwargs, word in (
        ({"host_id": "a/b"}, "host_id"),
        ({"host_id": ""}, "host_id"),
        ({"socket_dir": "rel"}, "socket_dir"),
        ({"socket_dir": "/a\0b"}, "socket_dir"),
        ({"agent": []}, "agent"),
        ({"agent": ["rock-agent", 3]}, "agent"),
        ({"idle_exit": -1}, "idle_exit"),
        ({"idle_exit": float("inf")}, "idle_exit"),
        ({"idle_exit": True}, "idle_exit"),
    ):
        with pytest.raises(BadRequest, match=word):
            RayAgentConnector(node, **kwargs)
    for bad in ("", "AB" * 28, "ab" * 27, 12, None):
        with pytest.raises(BadRequest, match="56 hex digits"):
            RayAgentConnector(bad)  # type: ignore[arg-type]
    assert RayAgentConnector(node).name == f"ray://{node}"


def test_without_ray_the_sdk_imports_and_the_transport_says_how_to_install(
    tmp_path: Path,
) -> None:
    program = """
import sys
sys.modules["ray"] = None  # as if the extra were not installed
import anyio, rock_sdk
from rock_core import BadRequest
from rock_sdk.integrations.ray import RayAgentConnector, ray_hosts


async def connect():
    async with RayAgentConnector("ab" * 28).connect():
        pass

for attempt in (lambda: ray_hosts("auto"), lambda: anyio.run(connect)):
    try:
        attempt()
    except BadRequest as exc:
        print("BadRequest:", exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert "from_ray needs ray: pip install '.[ray]'" in lines[0]
    assert "the Ray transport needs ray: pip install '.[ray]'" in lines[1]
