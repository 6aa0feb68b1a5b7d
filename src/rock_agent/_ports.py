"""Port forwarding, agent side: one TCP connection inside a sandbox per `ForwardPort` request.

Rules:
- Sandboxes usually have no network (mode "none": loopback only), so the agent cannot reach
  them by address: the runtime connects from inside the sandbox's network namespace
  (`ContainerRuntime.connect`; Docker's is `_netns`), the same for "none" and "bridge".
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
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream

from rock_core import BadRequest, RockError, SandboxFailed
from rock_core.protocol import ForwardPort, ForwardReply, Message, Reply, StreamCredit, StreamData
from rock_core.serving import CHUNK_SIZE, WINDOW, CreditGate

from ._files import until_end
from ._runtime import ContainerRuntime


class _Server(Protocol):
    runtime: ContainerRuntime


class _Conn(Protocol):
    async def send(self, message: Any) -> None: ...

    def gate(self, request_id: int) -> CreditGate: ...

    def open_inbound(
        self, request_id: int, window: int
    ) -> MemoryObjectReceiveStream[bytes | None]: ...


class _Counts:
    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


async def _inside_to_caller(
    conn: _Conn,
    request_id: int,
    gate: CreditGate,
    inside: ByteStream,
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
    inside: ByteStream,
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
    inside = await server.runtime.connect(req.sandbox_id, req.address, req.port)
    return await carry(conn, req.id, inside, f"port {req.port} in sandbox {req.sandbox_id}")


async def carry(conn: _Conn, request_id: int, inside: ByteStream, where: str) -> ForwardReply:
    """Carry the connection `inside` both ways under `request_id` until both ends are done
    (it is closed then); `where` names it in errors."""
    # Room for a full window plus the end marker: the caller never sends more than granted.
    receive = conn.open_inbound(request_id, WINDOW * 2)
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

            gate = conn.gate(request_id)
            tg.start_soon(
                direction, lambda: _inside_to_caller(conn, request_id, gate, inside, counts, where)
            )
            await direction(
                lambda: _caller_to_inside(conn, request_id, receive, inside, counts, where)
            )
    if failures:
        raise failures[0]
    return ForwardReply(id=request_id, bytes_in=counts.bytes_in, bytes_out=counts.bytes_out)
