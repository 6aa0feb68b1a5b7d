"""Ways to reach an agent: a host address names one, `open_host` connects to it.

- ``local``: start ``rock-agent serve --stdio`` as a child process and talk over its pipes. The
  agent lives exactly as long as this link: when this program dies, the pipe closes and the
  agent removes this program's sandboxes before it exits.
- ``unix:///path/to/agent.sock``: a running agent (for example the systemd service).
- ``ssh://[user@]host[:port]``: an agent on another machine, over SSH only (`_ssh`).

`_addresses` parses them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ._addresses import HostAddress, parse
from ._channel import ByteStream, SplitStream
from ._connection import AgentConnection, open_agent_connection
from ._errors import TransportError
from ._ssh import SshOptions, open_ssh_stream

AGENT_COMMAND_ENV = "ROCK_AGENT_COMMAND"


def agent_command() -> list[str]:
    """How to start a local agent: ``$ROCK_AGENT_COMMAND`` or this interpreter's module."""
    custom = os.environ.get(AGENT_COMMAND_ENV)
    if custom:
        return custom.split()
    return [sys.executable, "-m", "rock_agent"]


@asynccontextmanager
async def open_host(
    address: str | HostAddress,
    *,
    owner: str,
    lease: float = 0.0,
    ssh: SshOptions | None = None,
    admin: bool = False,
) -> AsyncIterator[AgentConnection]:
    """Connect to the agent at `address` and handshake as `owner` (asking for `lease` s).

    With `admin`, as an administrator's connection (see `Hello.admin`).
    """
    where = parse(address) if isinstance(address, str) else address
    if where.scheme == "local":
        async with _open_local(owner, admin) as conn:
            yield conn
        return
    async with _open_stream(where, ssh or SshOptions()) as stream:
        async with open_agent_connection(
            stream, owner=owner, name=where.text, lease=lease, admin=admin
        ) as conn:
            yield conn


@asynccontextmanager
async def _open_stream(where: HostAddress, ssh: SshOptions) -> AsyncIterator[ByteStream]:
    if where.scheme == "ssh":
        async with open_ssh_stream(where, ssh) as stream:
            yield stream
        return
    try:
        unix = await anyio.connect_unix(where.path)
    except OSError as exc:
        raise TransportError(f"no agent listens on {where.path}: {exc.strerror or exc}") from exc
    yield unix


@asynccontextmanager
async def _open_local(owner: str, admin: bool) -> AsyncIterator[AgentConnection]:
    command = [*agent_command(), "serve", "--stdio", "--log-level", "WARNING"]
    try:
        process = await anyio.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            # Its own session: a Ctrl-C meant for this program must not kill the agent before
            # it has cleaned up after us.
            start_new_session=True,
        )
    except OSError as exc:
        raise TransportError(f"cannot start the local agent ({command[0]}): {exc}") from exc
    assert process.stdin is not None and process.stdout is not None
    stream = SplitStream(process.stdout, process.stdin)
    try:
        async with open_agent_connection(stream, owner=owner, name="local", admin=admin) as conn:
            yield conn
    finally:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await process.stdin.aclose()
            # The agent removes our sandboxes on end-of-file, then exits.
            with anyio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
