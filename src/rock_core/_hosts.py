"""Ways to reach an agent: a host address names one, `open_host` connects to it.

- ``local``: start ``rock-agent serve --stdio`` as a child process and talk over its pipes. The
  agent lives exactly as long as this link: when this program dies, the pipe closes and the
  agent removes this program's sandboxes before it exits.
- ``unix:///path/to/agent.sock``: a running agent (for example the systemd service).
- ``ssh://[user@]host[:port]``: an agent on another machine, over SSH only (`_ssh`).

`_addresses` parses them.

Rules:
- A host is reached through a `Connector`: a name plus an async context manager yielding a
  `ByteStream`. `AddressConnector` is the one for an address; tests and users may pass their
  own (an in-memory agent, a custom tunnel) to `open_cluster(hosts=[...])`. The cluster opens a
  connector again for every reconnect, so it must be reusable.
- The connector only carries bytes: the handshake (`open_agent_connection`) is the caller's.
- A ``local`` agent gets no lease: it lives and dies with its pipe.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, runtime_checkable

import anyio
import sniffio

from ._addresses import HostAddress, parse
from ._channel import ByteStream, SplitStream
from ._connection import AgentConnection, open_agent_connection
from ._errors import TransportError
from ._pipes import PipeStream, open_pipe_stream
from ._ssh import SshOptions, open_ssh_stream
from ._unix_stream import connect_unix

AGENT_COMMAND_ENV = "ROCK_AGENT_COMMAND"


def agent_command() -> list[str]:
    """How to start a local agent: ``$ROCK_AGENT_COMMAND`` or this interpreter's module."""
    custom = os.environ.get(AGENT_COMMAND_ENV)
    if custom:
        return custom.split()
    return [sys.executable, "-m", "rock_agent"]


@runtime_checkable
class Connector(Protocol):
    """A way to reach one agent: `connect()` opens a fresh byte stream to it, each time.

    A connector may also have ``leased = False`` (as ``local`` does): its agent ends with the
    link, so the handshake asks for no owner lease. Without it, the cluster's lease is asked.
    """

    @property
    def name(self) -> str:
        """How logs and errors name the host before its agent says its id."""
        ...

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        """Open a stream to the agent; closing the context closes it (and whatever carries it)."""
        ...


class AddressConnector:
    """The connector for a host address (``local``, ``unix://``, ``ssh://``)."""

    def __init__(self, address: str | HostAddress, ssh: SshOptions | None = None) -> None:
        self.address = parse(address) if isinstance(address, str) else address
        self.ssh = ssh

    @property
    def name(self) -> str:
        """The address as written."""
        return self.address.text

    @property
    def leased(self) -> bool:
        """Whether the agent honours a lease (a ``local`` agent ends with its pipe)."""
        return self.address.scheme != "local"

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        """Start (``local``) or reach the agent."""
        if self.address.scheme == "local":
            return _open_local()
        return _open_stream(self.address, self.ssh or SshOptions())

    def __repr__(self) -> str:
        return f"AddressConnector({self.address.text!r})"


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
    connector = AddressConnector(address, ssh)
    async with connector.connect() as stream:
        async with open_agent_connection(
            stream,
            owner=owner,
            name=connector.name,
            lease=lease if connector.leased else 0.0,
            admin=admin,
        ) as conn:
            yield conn


@asynccontextmanager
async def _open_stream(where: HostAddress, ssh: SshOptions) -> AsyncIterator[ByteStream]:
    if where.scheme == "ssh":
        async with open_ssh_stream(where, ssh) as stream:
            yield stream
        return
    try:
        unix = await connect_unix(where.path)
    except OSError as exc:
        raise TransportError(f"no agent listens on {where.path}: {exc.strerror or exc}") from exc
    yield unix


@asynccontextmanager
async def _open_local() -> AsyncIterator[ByteStream]:
    command = [*agent_command(), "serve", "--stdio", "--log-level", "WARNING"]
    # On asyncio the agent's pipes are read and written straight from the loop (`_pipes`: no
    # copy and no extra hop per message, as anyio's process streams make); else through those.
    pipes = sniffio.current_async_library() == "asyncio"
    to_agent, from_agent = (os.pipe(), os.pipe()) if pipes else ((-1, -1), (-1, -1))
    try:
        process = await anyio.open_process(
            command,
            stdin=to_agent[0] if pipes else subprocess.PIPE,
            stdout=from_agent[1] if pipes else subprocess.PIPE,
            stderr=None,
            # Its own session: a Ctrl-C meant for this program must not kill the agent before
            # it has cleaned up after us.
            start_new_session=True,
        )
    except BaseException as exc:  # a failed start, or a cancelled one: no descriptor stays
        for fd in (*to_agent, *from_agent):
            if fd >= 0:
                os.close(fd)
        if isinstance(exc, OSError):
            raise TransportError(f"cannot start the local agent ({command[0]}): {exc}") from exc
        raise
    pipe: PipeStream | None = None
    try:
        stream: ByteStream
        if pipes:
            os.close(to_agent[0])  # the agent's ends: only the agent holds them now
            os.close(from_agent[1])
            reading = os.fdopen(from_agent[0], "rb", buffering=0)
            writing = os.fdopen(to_agent[1], "wb", buffering=0)
            try:
                stream = pipe = await open_pipe_stream(reading, writing)
            except BaseException:
                reading.close()
                writing.close()  # the agent reads its end of input and exits
                raise
        else:
            assert process.stdin is not None and process.stdout is not None
            stream = SplitStream(process.stdout, process.stdin)
        yield stream
    finally:
        with anyio.CancelScope(shield=True):
            if pipe is not None:
                pipe.close_input()
            elif not pipes:
                with contextlib.suppress(OSError, anyio.BrokenResourceError):
                    assert process.stdin is not None
                    await process.stdin.aclose()
            # The agent removes our sandboxes on end-of-file, then exits.
            with anyio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            if pipe is not None:
                await pipe.aclose()
