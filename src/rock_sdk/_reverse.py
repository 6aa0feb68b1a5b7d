"""`Sandbox.expose_host_port`: a port of the caller, reachable from inside a sandbox.

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
    local_host: str,
    port: int,
    on_error: Callable[[RockError], object] | None,
) -> AsyncIterator[HostPort]:
    """See `Sandbox.expose_host_port`."""
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
