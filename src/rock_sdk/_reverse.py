"""`Sandbox.expose_host_port`: a port of the caller, reachable from inside a sandbox (this
function is the method: `Sandbox` binds it).

Rules:
- The listen follows the sandbox's host across reconnects: its link is looked up through
  the cluster (``cluster.connection``), as `Sandbox.expose_port` does.
- Ports, addresses and the agent's support are checked by `rock_core.open_host_port`, in
  one place; here only what the SDK adds (the sandbox must be started).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from rock_core import Cluster, HostPort, RockError, open_host_port

from . import _arguments as args


class _Started(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    @property
    def cluster(self) -> Cluster: ...


@asynccontextmanager
async def expose_host_port(
    sandbox: _Started,
    local_port: int,
    *,
    local_host: str = "127.0.0.1",
    port: int = 0,
    on_error: Callable[[RockError], object] | None = None,
) -> AsyncIterator[HostPort]:
    """Make the caller's `local_host:local_port` reachable inside the sandbox while the block
    runs, on the sandbox's 127.0.0.1:`port` (0: any free port), with its network off too.

    ``async with sb.expose_host_port(8000) as url:`` gives ``url``, ``http://127.0.0.1:PORT``
    (a `HostPort`: a str that also counts connections, bytes and errors) for the programs
    inside. Every connection made there is carried over the agent link (over SSH, the SSH
    connection) to a new connection to `local_host:local_port`. One that fails (the local
    port refuses it, say) is reset inside, kept in ``url.errors`` and given to `on_error`.
    The listen is made again on the same port after the cluster reconnects to the host; the
    block ends with `SandboxFailed` if the sandbox stops or is removed meanwhile (so stop or
    delete it after the block).
    """
    args.callback(on_error, "on_error", "the error of a failed connection")
    cluster, sandbox_id = sandbox.cluster, sandbox.sandbox_id
    async with open_host_port(
        lambda: cluster.connection(sandbox_id),
        sandbox_id,
        local_port,
        local_host=local_host,
        port=port,
        on_error=on_error,
    ) as exposed:
        yield exposed
