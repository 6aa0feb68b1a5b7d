"""Public fakes for testing code built on rock_agent, with no container engine.

- `FakeRuntime` is a `ContainerRuntime` whose sandboxes are folders on this host and whose
  processes are real local processes (see `_fake_runtime` for what it models and what not).
  The real agent (`open_agent`) runs on it unchanged, sessions included. A sandbox whose
  main process ends stops with its exit code and a "die", as a container does;
  `FakeRuntime.crash` makes one crash (or be OOM-killed) on purpose.
- `open_fake_connection` connects to such an agent over an in-memory stream, as one owner: a
  handshaken `rock_core.AgentConnection`, no sockets, no SSH.
- `AgentConnector` makes such an agent a host of a cluster: `open_cluster([AgentConnector(
  agent)])` (rock_core's or rock_sdk's) reaches it over memory at every (re)connect, so SDK
  code (`Sandbox.arun`, `write_file`, environments) runs against it unchanged.
- `check_runtime` (and its checks, `CHECKS`) is the conformance suite every
  `ContainerRuntime` passes: the fake and `DockerRuntime` alike, so the fake cannot drift
  from the real thing.

The agent side is asyncio-only (as `DockerRuntime` is).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from rock_core import AgentConnection, open_agent_connection, unwrap_single_errors
from rock_core.serving import ByteStream, Peer
from rock_core.testing import memory_stream_pair

from ._conformance import CHECKS, check_runtime
from ._fake_runtime import FakeRuntime
from ._server import AgentServer


@asynccontextmanager
async def open_fake_connection(
    server: AgentServer, *, owner: str = "tester", admin: bool = False
) -> AsyncIterator[AgentConnection]:
    """A connection to `server` over memory, as `owner` of this process's user (or that
    user's administrator, with `admin`). Leaving the block closes it: the agent then treats
    the owner as gone, as it does when a local program's link closes."""
    client, end = memory_stream_pair()
    # An error of the block comes out as itself, not inside the serving task's group.
    with unwrap_single_errors():
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, end, Peer(uid=os.getuid()))
            async with open_agent_connection(client, owner=owner, admin=admin) as conn:
                yield conn


class AgentConnector:
    """A `rock_core.Connector` to `server` over memory: each connect is a fresh in-memory
    stream that the agent serves as a connection of this process's user, as its unix socket
    would. Closing the stream is a closed link (the cluster reconnects as over SSH)."""

    def __init__(self, server: AgentServer, name: str | None = None) -> None:
        self.server = server
        self._name = name

    @property
    def name(self) -> str:
        """The name given, else ``fake://<host id>``."""
        return self._name if self._name is not None else f"fake://{self.server.host_id}"

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ByteStream]:
        """A stream the agent serves until it is closed."""
        client, end = memory_stream_pair()
        with unwrap_single_errors():
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.server.serve, end, Peer(uid=os.getuid()))
                try:
                    yield client
                finally:
                    await client.aclose()
                    tg.cancel_scope.cancel()

    def __repr__(self) -> str:
        return f"AgentConnector({self.name!r})"


__all__ = ["CHECKS", "AgentConnector", "FakeRuntime", "check_runtime", "open_fake_connection"]
