"""Public fakes for testing code built on rock_agent, with no container engine.

- `FakeRuntime` is a `ContainerRuntime` whose sandboxes are folders on this host and whose
  processes are real local processes (see `_fake_runtime` for what it models and what not).
  The real agent (`open_agent`) runs on it unchanged, sessions included.
- `open_fake_connection` connects to such an agent over an in-memory stream, as one owner: a
  handshaken `rock_core.AgentConnection`, no sockets, no SSH.
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

from rock_core._connection import AgentConnection, open_agent_connection, unwrap_single_errors
from rock_core._endpoint import Peer
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


__all__ = ["CHECKS", "FakeRuntime", "check_runtime", "open_fake_connection"]
