"""A scripted agent that answers port forwards by echoing, for the forward tests
(`test_port_forward`, `test_port_forward_reconnect`): it obeys and checks credit both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskGroup

from rock_core import PROTOCOL_VERSION, open_agent_connection
from rock_core import _protocol as p
from rock_core._channel import FramedChannel
from rock_core._ports import PortForward, open_port_forward
from rock_core.testing import memory_stream_pair

INFO = p.SandboxInfo(
    sandbox_id="sb-1", container_id="c", image="i", state="running", owner="o", created_at=1.0
)


class EchoAgent:
    """Answers `ForwardPort` by echoing upper-cased bytes, obeying and checking credit.

    It returns the caller's credit a moment after each chunk (a slow consumer), so a caller
    that ignored credit would be caught sending beyond it.
    """

    def __init__(self, *, window: int = 2, refuse: int = 0) -> None:
        self.window = window
        self.refuse = refuse
        self.overruns = 0  # chunks the client sent beyond its credit
        self.cancelled: list[int] = []
        self.received = 0
        self._to_client: dict[int, int] = {}  # credit we granted, not yet used
        self._from_client: dict[int, int] = {}  # credit the client granted us
        self._pending: dict[int, list[bytes]] = {}
        self._ending: set[int] = set()
        self._counts: dict[int, list[int]] = {}

    async def serve(self, stream: Any) -> None:
        channel = FramedChannel(stream, p.decode_client_message)
        await channel.receive()
        await channel.send(
            p.Welcome(protocol=PROTOCOL_VERSION, agent_version="t", host_id="h", cpus=1, memory=1)
        )
        async with anyio.create_task_group() as tg:
            while (message := await channel.receive()) is not None:
                await self._on(channel, tg, message)
            tg.cancel_scope.cancel()

    async def _on(self, channel: FramedChannel[Any], tg: TaskGroup, message: p.Message) -> None:
        if isinstance(message, p.InspectSandbox):
            await channel.send(p.SandboxReply(id=message.id, sandbox=INFO))
        elif isinstance(message, p.ForwardPort):
            if message.port == self.refuse:
                await channel.send(
                    p.ErrorReply(id=message.id, code="not_found", message="nothing listens")
                )
                return
            self._to_client[message.id] = self.window
            self._from_client.setdefault(message.id, 0)
            self._pending[message.id], self._counts[message.id] = [], [0, 0]
            await channel.send(p.StreamCredit(id=message.id, chunks=self.window))
        elif isinstance(message, p.StreamCredit):
            self._from_client[message.id] = self._from_client.get(message.id, 0) + message.chunks
            if message.id in self._pending:
                await self._flush(channel, message.id)
        elif isinstance(message, p.StreamData):
            self._to_client[message.id] -= 1
            if self._to_client[message.id] < 0:
                self.overruns += 1
            if message.end:
                self._ending.add(message.id)
            else:
                self.received += len(message.data)
                self._counts[message.id][0] += len(message.data)
                self._pending[message.id].append(message.data.upper())
                tg.start_soon(self._give_back, channel, message.id)
            await self._flush(channel, message.id)
        elif isinstance(message, p.Cancel):
            self.cancelled.append(message.target)

    async def _give_back(self, channel: FramedChannel[Any], request_id: int) -> None:
        await anyio.sleep(0.002)
        self._to_client[request_id] += 1
        await channel.send(p.StreamCredit(id=request_id, chunks=1))

    async def _flush(self, channel: FramedChannel[Any], request_id: int) -> None:
        queue = self._pending[request_id]
        while queue and self._from_client[request_id] > 0:
            self._from_client[request_id] -= 1
            data = queue.pop(0)
            self._counts[request_id][1] += len(data)
            await channel.send(p.StreamData(id=request_id, data=data))
        if not queue and request_id in self._ending:
            self._ending.discard(request_id)
            await channel.send(p.StreamData(id=request_id, data=b"", end=True))
            bytes_in, bytes_out = self._counts[request_id]
            await channel.send(
                p.ForwardReply(id=request_id, bytes_in=bytes_in, bytes_out=bytes_out)
            )


@asynccontextmanager
async def forwarding(agent: EchoAgent, port: int = 80) -> AsyncIterator[PortForward]:
    client, server = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.serve, server)
        async with (
            open_agent_connection(client, owner="me", name="echo") as conn,
            open_port_forward(conn, "sb-1", port) as forward,
        ):
            yield forward
        tg.cancel_scope.cancel()


async def send_all_and_read(local: SocketStream, payload: bytes) -> bytes:
    answer = bytearray()
    async with anyio.create_task_group() as tg:

        async def write() -> None:
            await local.send(payload)
            await local.send_eof()

        tg.start_soon(write)
        while True:
            try:
                answer += await local.receive()
            except anyio.EndOfStream:
                break
    return bytes(answer)


__all__ = ["INFO", "EchoAgent", "forwarding", "send_all_and_read"]
