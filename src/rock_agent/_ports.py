"""Port forwarding, agent side: one TCP connection inside a sandbox per `ForwardPort` request.

Rules:
- Sandboxes usually have no network (mode "none": loopback only), so the agent cannot reach
  them by address. It connects from inside instead: a short-lived thread enters the container's
  network namespace (``setns`` on ``/proc/<pid>/ns/net``), creates and connects the socket there
  and exits. A socket stays in the namespace it was made in, so the event loop then uses it like
  any other; the loop's own thread never changes namespace, and a thread that did is never
  reused. This works the same for "none" and "bridge" sandboxes, and needs a root agent.
- A connect may take up to `CONNECT_TIMEOUT`, so the threads waiting for connects have a
  limiter of their own (`CONNECT_THREADS` at once): slow connects never starve anyio's default
  thread pool. A cancelled request does not wait for its connect: whichever ends last, the
  request or the thread, closes the socket, so none is left to the garbage collector.
- The agent grants credit only once connected: until then the caller sends nothing. Each
  direction is a credit-controlled `StreamData` stream (one chunk is what one read returned,
  sent at once, so interactive protocols are not delayed); an ``end`` chunk half-closes it.
  The caller's ``end`` takes a credit too: before the first grant, nothing reads its stream.
- The reply comes when both directions have ended. Connection refused is `NotFound` (nothing
  listens there), a connection reset mid-way is `SandboxFailed`; the caller closing its side
  (cancel) closes the connection inside.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import SocketStream
from anyio.lowlevel import RunVar
from anyio.streams.memory import MemoryObjectReceiveStream

from rock_core._channel import CHUNK_SIZE, WINDOW, CreditGate
from rock_core._errors import BadRequest, NotFound, RockError, SandboxFailed, TimedOut
from rock_core._protocol import ForwardPort, ForwardReply, Message, Reply, StreamCredit, StreamData

from ._docker import DockerRuntime
from ._files import until_end

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0
#: Connects waited for at once; more wait their turn (anyio's default thread pool is not used).
CONNECT_THREADS = 64
_libc = ctypes.CDLL(None, use_errno=True)
_connect_limiter: RunVar[anyio.CapacityLimiter] = RunVar("rock_agent_connect_limiter")


class _Server(Protocol):
    runtime: DockerRuntime


class _Conn(Protocol):
    async def send(self, message: Any) -> None: ...

    def gate(self, request_id: int) -> CreditGate: ...

    def open_inbound(
        self, request_id: int, window: int
    ) -> MemoryObjectReceiveStream[bytes | None]: ...


def _enter_netns(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns: {os.strerror(errno)}")
    finally:
        os.close(fd)


class _Connect:
    """One connect from inside the network namespace of `pid`, in a thread used only for it.

    The outcome waits under a lock until the caller `claim`s it; a caller that gives up calls
    `abandon`, and the socket is closed by whoever comes last: `abandon`, or the thread.
    """

    def __init__(self, pid: int, family: socket.AddressFamily, address: str, port: int) -> None:
        self._target = (pid, family, address, port)
        self._lock = threading.Lock()
        self._abandoned = False
        self._outcome: socket.socket | BaseException | None = None

    def run(self) -> None:
        """Connect in a new thread and wait for it (call from a worker thread)."""
        pid = self._target[0]
        thread = threading.Thread(target=self._work, name=f"rock-netns-{pid}", daemon=True)
        thread.start()
        thread.join()

    def _work(self) -> None:
        pid, family, address, port = self._target
        outcome: socket.socket | BaseException
        try:
            _enter_netns(pid)
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect((address, port))
            except BaseException:
                sock.close()
                raise
            outcome = sock
        except BaseException as exc:
            outcome = exc
        with self._lock:
            if not self._abandoned:
                self._outcome = outcome
                return
        if isinstance(outcome, socket.socket):
            outcome.close()

    def claim(self) -> socket.socket:
        """The connected socket, now the caller's; or the connect's error, raised."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
        assert outcome is not None, "claimed before the connecting thread ended"
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def abandon(self) -> None:
        """The caller gives up: close the socket now if it is there, else when it comes."""
        with self._lock:
            self._abandoned = True
            outcome, self._outcome = self._outcome, None
        if isinstance(outcome, socket.socket):
            outcome.close()


def _limiter() -> anyio.CapacityLimiter:
    try:
        return _connect_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(CONNECT_THREADS)
        _connect_limiter.set(limiter)
        return limiter


async def connect_inside(sandbox_id: str, pid: int, address: str, port: int) -> SocketStream:
    """A TCP stream to `address:port` as seen from inside the sandbox whose init is `pid`."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    where = f"{address}:{port} in sandbox {sandbox_id}"
    attempt = _Connect(pid, family, address, port)
    try:
        # The waiting happens in a pool thread; the connecting thread is a fresh one (above),
        # because a thread that entered a namespace must not run anything else afterwards.
        await anyio.to_thread.run_sync(attempt.run, abandon_on_cancel=True, limiter=_limiter())
    except BaseException:
        attempt.abandon()  # cancelled: the socket, if any, is closed now or when it comes
        raise
    try:
        sock = attempt.claim()
    except ConnectionRefusedError as exc:
        raise NotFound(f"nothing listens on {where} (connection refused)") from exc
    except TimeoutError as exc:
        raise TimedOut(f"connecting to {where} took over {CONNECT_TIMEOUT:g} s") from exc
    except PermissionError as exc:
        raise BadRequest(
            f"cannot enter the network of sandbox {sandbox_id}: {exc.strerror}; "
            "port forwarding needs the agent to run as root"
        ) from exc
    except FileNotFoundError as exc:
        raise SandboxFailed(f"sandbox {sandbox_id} stopped while connecting to {where}") from exc
    except OSError as exc:
        raise SandboxFailed(f"cannot connect to {where}: {exc.strerror or exc}") from exc
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await SocketStream.from_socket(sock)
    except BaseException:
        sock.close()  # cancelled (or failed) before the stream took it over
        raise


class _Counts:
    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


async def _inside_to_caller(
    conn: _Conn,
    request_id: int,
    gate: CreditGate,
    inside: SocketStream,
    counts: _Counts,
    where: str,
) -> None:
    send = conn.send
    while True:
        try:
            data = await inside.receive(CHUNK_SIZE)
        except anyio.EndOfStream:
            await send(StreamData(id=request_id, data=b"", end=True))
            return
        except (anyio.BrokenResourceError, OSError) as exc:
            raise SandboxFailed(f"the connection to {where} was reset: {exc}") from exc
        await gate.take()
        await send(StreamData(id=request_id, data=data))
        counts.bytes_out += len(data)


async def _caller_to_inside(
    conn: _Conn,
    request_id: int,
    receive: MemoryObjectReceiveStream[bytes | None],
    inside: SocketStream,
    counts: _Counts,
    where: str,
) -> None:
    credit: Message = StreamCredit(id=request_id, chunks=1)
    await conn.send(StreamCredit(id=request_id, chunks=WINDOW))
    async for chunk in until_end(receive):
        try:
            await inside.send(chunk)
        except (anyio.BrokenResourceError, OSError) as exc:
            raise SandboxFailed(f"the connection to {where} was reset: {exc}") from exc
        counts.bytes_in += len(chunk)
        await conn.send(credit)
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await inside.send_eof()


async def forward_port(server: _Server, conn: _Conn, req: ForwardPort) -> Reply:
    """Handler of `ForwardPort`: carry one connection both ways until both ends are done."""
    try:
        ipaddress.ip_address(req.address)
    except ValueError as exc:
        raise BadRequest(f"address {req.address!r} is not an IP address") from exc
    attrs = await server.runtime.inspect_container(req.sandbox_id)
    state = attrs.get("State") or {}
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or pid <= 0:
        raise BadRequest(
            f"sandbox {req.sandbox_id} is not running ({state.get('Status', 'unknown')}); "
            "start it before forwarding a port",
            sandbox_id=req.sandbox_id,
        )
    where = f"port {req.port} in sandbox {req.sandbox_id}"
    inside = await connect_inside(req.sandbox_id, pid, req.address, req.port)
    # Room for a full window plus the end marker: the caller never sends more than granted.
    receive = conn.open_inbound(req.id, WINDOW * 2)
    counts = _Counts()
    failures: list[RockError] = []
    async with inside, receive:
        async with anyio.create_task_group() as tg:

            async def direction(run: Callable[[], Awaitable[None]]) -> None:
                # The first failure of either direction ends both, and is the reply.
                try:
                    await run()
                except RockError as exc:
                    failures.append(exc)
                    tg.cancel_scope.cancel()

            gate = conn.gate(req.id)
            tg.start_soon(
                direction, lambda: _inside_to_caller(conn, req.id, gate, inside, counts, where)
            )
            await direction(lambda: _caller_to_inside(conn, req.id, receive, inside, counts, where))
    if failures:
        raise failures[0]
    return ForwardReply(id=req.id, bytes_in=counts.bytes_in, bytes_out=counts.bytes_out)
