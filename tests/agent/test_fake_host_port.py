"""Host ports reached from inside a sandbox (`ListenPort`, `ClaimConnection`) on `FakeRuntime`.

The fake's sandboxes share this host's network, so "inside the sandbox" is a TCP client of
this process connecting to the port the agent listens on. The caller's side is the real
`rock_core.open_host_port`; its local server is a real anyio TCP server.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from rock_agent import _reverse
from rock_core import (
    AlreadyExists,
    BadRequest,
    HostPort,
    HostUnavailable,
    NotFound,
    RockError,
    SandboxFailed,
    TransportError,
    open_host_port,
)
from rock_core._cluster import Host
from rock_core._protocol import (
    Accepted,
    ClaimConnection,
    CreateSandbox,
    Done,
    ForwardReply,
    Listening,
    ListenPort,
    RemoveSandbox,
    Reply,
    Request,
    SandboxReply,
    SandboxSpec,
    StopSandbox,
)
from rock_core.testing import open_fake_cluster
from rock_sdk import Sandbox

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "hostport"


async def make_box(fake: Fake) -> None:
    await fake.conn.call(CreateSandbox(sandbox_id=BOX, spec=spec()), SandboxReply)


@asynccontextmanager
async def upper_server() -> AsyncIterator[int]:
    """A TCP server of the caller answering each connection's bytes upper-cased; its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(SocketAttribute.local_address)[1])

    async def serve(stream: SocketStream) -> None:
        async with stream:
            try:
                while True:
                    await stream.send((await stream.receive()).upper())
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield port
        tg.cancel_scope.cancel()


async def from_inside(exposed: HostPort, payload: bytes) -> bytes:
    """What a program in the (fake) sandbox gets back for `payload` sent to the exposed port."""
    async with await anyio.connect_tcp("127.0.0.1", exposed.port) as inside:
        await inside.send(payload)
        got = b""
        while len(got) < len(payload):
            got += await inside.receive()
        return got


async def no_listens(fake: Fake) -> None:
    """Wait until the agent has closed every listen (a cancel reaches it after the block)."""
    with anyio.fail_after(10):
        while fake.server.host_ports.statistics() != (0, 0):  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def settled(exposed: HostPort) -> None:
    with anyio.fail_after(10):
        while exposed.active:  # noqa: ASYNC110
            await anyio.sleep(0.01)


@covers(ListenPort, ClaimConnection)
async def test_a_connection_inside_reaches_the_callers_port_both_ways() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        async with open_host_port(fake.conn, BOX, local_port) as exposed:
            assert exposed == f"http://127.0.0.1:{exposed.port}" == exposed.url
            assert exposed.port > 0 and exposed.local_port == local_port
            assert fake.server.host_ports.statistics() == (1, 0)
            big = bytes(range(97, 123)) * 200_000  # 5.2 MB: many credit windows each way
            assert await from_inside(exposed, big) == big.upper()
            await settled(exposed)
            assert (exposed.connections, exposed.errors) == (1, [])
            assert exposed.bytes_in == exposed.bytes_out == len(big)
        await no_listens(fake)
        with pytest.raises(OSError):  # leaving the block closed the listener inside
            await anyio.connect_tcp("127.0.0.1", exposed.port)


@covers(ListenPort, ClaimConnection)
async def test_many_connections_at_once() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        async with open_host_port(fake.conn, BOX, local_port) as exposed:
            answers: dict[int, bytes] = {}

            async def one(n: int) -> None:
                answers[n] = await from_inside(exposed, f"hello {n}".encode())

            async with anyio.create_task_group() as tg:
                for n in range(40):
                    tg.start_soon(one, n)
            assert answers == {n: f"HELLO {n}".encode() for n in range(40)}
            await settled(exposed)
            assert (exposed.connections, exposed.errors) == (40, [])


@covers(ListenPort, ClaimConnection)
async def test_a_refused_local_port_resets_the_connection_inside_and_is_kept() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        async with upper_server() as closed_port:
            pass  # nothing listens there any more
        seen: list[RockError] = []
        async with open_host_port(fake.conn, BOX, closed_port, on_error=seen.append) as exposed:
            async with await anyio.connect_tcp("127.0.0.1", exposed.port) as inside:
                with pytest.raises(anyio.BrokenResourceError):  # reset, not a clean end
                    await inside.receive()
            await settled(exposed)
            (error,) = seen
            assert exposed.errors == [error]
            assert isinstance(error, NotFound)
            assert str(error) == (
                f"nothing listens on 127.0.0.1:{closed_port} (connection refused), so a "
                f"connection from sandbox {BOX} was reset"
            )


@covers(ListenPort, ClaimConnection)
async def test_an_on_error_that_raises_is_logged_and_the_block_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_fake() as fake:
        await make_box(fake)
        async with upper_server() as closed_port:
            pass

        def broken(error: RockError) -> None:
            raise ValueError("a bug in the caller's callback")

        async with open_host_port(fake.conn, BOX, closed_port, on_error=broken) as exposed:
            for _ in range(2):  # the second connection is still listened for and carried
                async with await anyio.connect_tcp("127.0.0.1", exposed.port) as inside:
                    with pytest.raises(anyio.BrokenResourceError):
                        await inside.receive()
                await settled(exposed)
            assert len(exposed.errors) == 2
        logged = [r for r in caplog.records if r.name == "rock_core.ports"]
        assert len(logged) == 2
        assert logged[0].exc_info is not None
        assert str(logged[0].exc_info[1]) == "a bug in the caller's callback"


async def ended_by(fake: Fake, local_port: int, request: Request, reply: type[Reply]) -> Exception:
    """The error a block ends with when `request` (another task's) ends its sandbox."""
    outcome: list[Exception] = []
    ready = anyio.Event()

    async def expose() -> None:
        try:
            async with open_host_port(fake.conn, BOX, local_port):
                ready.set()
                await anyio.sleep_forever()
        except RockError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(expose)
        await ready.wait()
        await fake.conn.call(request, reply)
    await no_listens(fake)
    (error,) = outcome
    return error


@covers(ListenPort, RemoveSandbox)
async def test_a_sandbox_removed_meanwhile_ends_the_block_with_a_clear_error() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        error = await ended_by(fake, local_port, RemoveSandbox(sandbox_id=BOX), Done)
        assert isinstance(error, SandboxFailed)
        assert re.fullmatch(
            rf"sandbox {BOX} stopped or was removed: port \d+ in sandbox {BOX} "
            "no longer reaches the host",
            str(error),
        )
        with pytest.raises(NotFound, match=rf"^no sandbox '{BOX}' on host "):
            async with open_host_port(fake.conn, BOX, local_port):
                pass


@covers(ListenPort, StopSandbox)
async def test_a_stopped_sandbox_ends_it_and_cannot_listen() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        error = await ended_by(fake, local_port, StopSandbox(sandbox_id=BOX), SandboxReply)
        assert isinstance(error, SandboxFailed)
        assert str(error).startswith(f"sandbox {BOX} stopped or was removed: port ")
        with pytest.raises(BadRequest) as info:
            async with open_host_port(fake.conn, BOX, local_port):
                pass
        assert str(info.value) == (
            f"sandbox {BOX} is not running (exited); start it before exposing a host port"
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"local_port": 0}, "local_port must be an integer between 1 and 65535, got 0"),
        ({"local_port": 65536}, "local_port must be an integer between 1 and 65535, got 65536"),
        ({"local_port": True}, "local_port must be an integer between 1 and 65535, got True"),
        ({"local_port": math.nan}, "local_port must be an integer between 1 and 65535, got nan"),
        ({"port": -1}, "port must be an integer between 0 and 65535, got -1"),
        ({"port": False}, "port must be an integer between 0 and 65535, got False"),
        ({"port": 8000.0}, "port must be an integer between 0 and 65535, got 8000.0"),
        ({"address": "localhost"}, "address 'localhost' is not an IP address"),
        ({"local_host": ""}, "local_host must be a host name or address, got ''"),
    ],
)
async def test_bad_input_is_a_bad_request(changes: dict[str, object], message: str) -> None:
    async with open_fake() as fake:
        arguments: dict[str, object] = {"local_port": 8000, **changes}
        with pytest.raises(BadRequest) as info:
            async with open_host_port(fake.conn, BOX, **arguments):  # type: ignore[arg-type]
                pass
        assert str(info.value) == message
        await no_listens(fake)


@covers(ListenPort)
async def test_a_taken_port_inside_is_already_exists() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        taken = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = int(taken.extra(SocketAttribute.local_address)[1])
        async with taken:
            with pytest.raises(AlreadyExists) as info:
                async with open_host_port(fake.conn, BOX, local_port, port=port):
                    pass
        assert str(info.value) == (
            f"cannot listen on 127.0.0.1:{port} in sandbox {BOX}: the port is in use"
        )


@covers(ListenPort, ClaimConnection)
async def test_claims_name_a_waiting_connection_of_a_listen_of_their_own_link() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        conn = fake.conn
        listen = ListenPort(sandbox_id=BOX)
        async with conn.open_request(listen) as answers:
            first = await answers.__anext__()
            assert isinstance(first, Listening)
            async with await anyio.connect_tcp("127.0.0.1", first.port) as inside:
                accepted = await answers.__anext__()
                assert accepted == Accepted(id=listen.id, connection=1)
                assert fake.server.host_ports.statistics() == (1, 1)
                with pytest.raises(NotFound) as info:
                    await conn.call(
                        ClaimConnection(sandbox_id=BOX, listen=listen.id, connection=2),
                        ForwardReply,
                    )
                assert str(info.value) == (
                    f"connection 2 to port {first.port} in sandbox {BOX} is not waiting "
                    "(claimed already, or reset after 30 s unclaimed)"
                )
                async with fake.connect() as other:  # the same owner, another link
                    with pytest.raises(NotFound) as info:
                        await other.call(
                            ClaimConnection(sandbox_id=BOX, listen=listen.id, connection=1),
                            ForwardReply,
                        )
                    assert str(info.value) == (
                        f"no listen {listen.id} on sandbox {BOX} on this link"
                    )
                reply = await conn.call(
                    ClaimConnection(sandbox_id=BOX, listen=listen.id, connection=1, reject=True),
                    ForwardReply,
                )
                assert (reply.bytes_in, reply.bytes_out) == (0, 0)
                with pytest.raises(anyio.BrokenResourceError):
                    await inside.receive()
        await no_listens(fake)


@covers(ListenPort, ClaimConnection)
async def test_the_listen_follows_the_hosts_link_across_a_reconnect() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        seen: list[RockError] = []
        async with fake.connect() as first:
            host = Host("h1", "memory", first)
            async with open_host_port(host.link, BOX, local_port, on_error=seen.append) as exp:
                assert await from_inside(exp, b"before") == b"BEFORE"
                await settled(exp)
                async with anyio.create_task_group() as tg:
                    link_closed = anyio.Event()

                    async def break_link() -> None:
                        # The link breaks (as a dead SSH connection does): the cluster marks
                        # the host down and reconnects.
                        await first.wait_closed()
                        link_closed.set()

                    tg.start_soon(break_link)
                    host.state, host.last_error = "reconnecting", "the agent closed the link"
                    await first._channel.aclose()
                    await link_closed.wait()
                with anyio.fail_after(10):
                    while not seen:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                assert type(seen[0]) is TransportError
                assert str(seen[0]) == "agent agent closed the connection"
                with pytest.raises(HostUnavailable):
                    host.link()  # while it is down, the listen is tried again and again
                async with fake.connect() as second:
                    host.connection, host.state = second, "connected"
                    with anyio.fail_after(10):
                        while fake.server.host_ports.statistics()[0] != 1:  # noqa: ASYNC110
                            await anyio.sleep(0.01)
                    assert await from_inside(exp, b"after") == b"AFTER"
                    await settled(exp)
                    assert exp.errors == seen and len(seen) == 1
        await no_listens(fake)


@covers(ListenPort)
async def test_a_newer_listen_of_the_owner_takes_the_port_over() -> None:
    async with open_fake() as fake, upper_server() as local_port:
        await make_box(fake)
        outcome: list[BaseException] = []
        ready = anyio.Event()
        port = 0

        async def older() -> None:
            nonlocal port
            try:
                async with open_host_port(fake.conn, BOX, local_port) as exposed:
                    port = exposed.port
                    ready.set()
                    await anyio.sleep_forever()
            except AlreadyExists as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(older)
            await ready.wait()
            async with fake.connect() as other:
                async with open_host_port(other, BOX, local_port, port=port) as newer:
                    assert newer.port == port
                    assert await from_inside(newer, b"mine") == b"MINE"
        (error,) = outcome
        assert str(error) == f"a newer listen took over port {port} in sandbox {BOX}"


async def test_an_agent_without_the_capability_is_refused_before_sending() -> None:
    # rock_core's fake agent announces no capabilities, like an agent from before this one.
    async with open_fake_cluster(1) as cluster:
        await cluster.create_sandbox(SandboxSpec(image="img:1"), sandbox_id="c1")
        sandbox = Sandbox.attach(cluster, "c1")
        with pytest.raises(BadRequest) as info:
            async with sandbox.expose_host_port(8000):
                pass
        assert re.fullmatch(
            r"the agent of host fake-0 \(version .*\) cannot reach a port of the caller from a "
            r"sandbox: upgrade rock-agent there",
            str(info.value),
        )
        with pytest.raises(BadRequest) as info:
            async with sandbox.expose_host_port(8000, on_error="print"):  # type: ignore[arg-type]
                pass
        assert str(info.value) == (
            "on_error must be a callable taking the error of a failed connection, or None, "
            "got 'print'"
        )
        assert (await cluster.inspect("c1")).sandbox_id == "c1"  # the link is still fine


@covers(ListenPort)
async def test_unclaimed_connections_are_reset_and_never_hoarded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_reverse, "CLAIM_TIMEOUT", 0.2)
    monkeypatch.setattr(_reverse, "MAX_WAITING", 1)
    async with open_fake() as fake:
        await make_box(fake)
        listen = ListenPort(sandbox_id=BOX)
        async with fake.conn.open_request(listen) as answers:
            first = await answers.__anext__()
            assert isinstance(first, Listening)
            async with (
                await anyio.connect_tcp("127.0.0.1", first.port) as waiting,
                await anyio.connect_tcp("127.0.0.1", first.port) as extra,
            ):
                # One waits for its claim; the other, beyond MAX_WAITING, is reset at once.
                assert await answers.__anext__() == Accepted(id=listen.id, connection=1)
                with pytest.raises(anyio.BrokenResourceError):
                    await extra.receive()
                # The waiting one is reset once CLAIM_TIMEOUT passed with no claim.
                with pytest.raises(anyio.BrokenResourceError):
                    await waiting.receive()
                assert fake.server.host_ports.statistics() == (1, 0)
        await no_listens(fake)
