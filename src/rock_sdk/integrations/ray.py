"""Rock on Ray without SSH: each node's agent reached through a Ray actor (issue 15).

For clusters that forbid SSH between nodes. ``open_cluster(ray_hosts("auto"))`` takes its
hosts from Ray's node table (as `HostSource.from_ray` does, following nodes that join and
leave) and reaches each through a detached actor pinned to its node, which relays the
protocol to the node's agent (docs/scale-out.md, "When SSH is not allowed").

Rules:
- A host is a node address of `HostSource.from_ray` (several nodes on one machine are one
  host); its connector is that node's `RayAgentConnector`, whose agent takes the address as
  its host id.
- `open_start_limiter` is a cluster-wide start limiter shared by every trainer process (a
  named Ray actor), given to ``open_cluster(..., start_gate=...)``.
- Nothing here imports ray until it is used: without the ``ray`` extra, `ray_hosts` raises
  `BadRequest` saying how to install it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rock_core import HostSource, ProtocolError

from ._ray_limiter import RayStartLimiter, open_start_limiter
from ._ray_stream import RayAgentConnector, actor_name


def ray_hosts(
    address: str = "auto",
    *,
    label: str | None = None,
    refresh: float = 5.0,
    socket_dir: str | None = None,
    agent: Sequence[str] | None = None,
    idle_exit: float = 600.0,
) -> HostSource:
    """The alive Ray nodes with CPUs (as `HostSource.from_ray`), each reached by its actor.

    `address`, `label` and `refresh` are `HostSource.from_ray`'s; `socket_dir`, `agent` and
    `idle_exit` are each node's `RayAgentConnector`'s. Give it to ``open_cluster(hosts=...)``.
    The returned source's ``nodes`` are Ray's view of the nodes that count.
    """
    checked = RayAgentConnector("0" * 56, socket_dir=socket_dir, agent=agent, idle_exit=idle_exit)

    def to_host(node_address: str) -> RayAgentConnector:
        # The reader sets `nodes` for a read before it turns that read's addresses into hosts.
        for node in source.nodes:
            if node.address == node_address:
                return RayAgentConnector(
                    node.node_id,
                    host_id=node_address,
                    socket_dir=checked.socket_dir,
                    agent=checked.agent,
                    idle_exit=checked.idle_exit,
                )
        raise ProtocolError(f"Ray's node list names no node at {node_address!r}")

    source = HostSource.from_ray(address, label=label, refresh=refresh, host=to_host)
    return source


__all__ = [
    "RayAgentConnector",
    "RayStartLimiter",
    "actor_name",
    "open_start_limiter",
    "ray_hosts",
]
