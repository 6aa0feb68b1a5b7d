"""`Sandbox.expose_port`: a port of a sandbox, reachable at a local address (this function is
the method: `Sandbox` binds it; the reverse direction is `_reverse`).

Rules:
- The forward follows the sandbox's host across reconnects: its link is looked up through
  the cluster (``cluster.connection``) for every connection.
- The sandbox must be started; its agent must announce the "ports" capability.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from rock_core import BadRequest, Cluster, PortForward, RockError, SandboxRecord, open_port_forward

from . import _arguments as args


class _Started(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    @property
    def cluster(self) -> Cluster: ...

    def _require_record(self) -> SandboxRecord: ...


@asynccontextmanager
async def expose_port(
    self: _Started,
    port: int,
    *,
    local_port: int = 0,
    local_host: str = "127.0.0.1",
    address: str = "127.0.0.1",
    on_error: Callable[[RockError], object] | None = None,
) -> AsyncIterator[PortForward]:
    """Make `port` of the sandbox reachable at a local address while the block runs.

    ``async with sb.expose_port(8000) as (host, port):`` then connect to ``host:port``.
    Every connection is carried through the agent link into the sandbox (it needs no
    network); a failed one is reset, and its error is kept in the forward's `errors` and
    given to `on_error`. The link is looked up per connection, so the forward keeps
    working after the cluster reconnects to the sandbox's host.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise BadRequest(f"port must be between 1 and 65535, got {port!r}")  # as `_ports`
    args.count(local_port, "local_port", 0, 65535)
    args.text(local_host, "local_host")
    args.text(address, "address")
    args.callback(on_error, "on_error", "the error of a failed connection")
    self._require_record()
    cluster, sandbox_id = self.cluster, self.sandbox_id
    cluster.connection(sandbox_id).require("ports", "forward ports")
    async with open_port_forward(
        lambda: cluster.connection(sandbox_id),
        sandbox_id,
        port,
        local_host=local_host,
        local_port=local_port,
        address=address,
        on_error=on_error,
    ) as forward:
        yield forward


__all__ = ["expose_port"]
