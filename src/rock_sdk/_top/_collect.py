"""Reading the live view from a cluster's agents, and acting on one sandbox of it.

Rules:
- One refresh is one `ReadHostView` per connected host, all at once, each bounded by
  `timeout`: a host that is down, slow or too old for the view still has its row, saying so,
  and never holds up the others.
- Stop and delete go to the host the row names. A sandbox of the cluster's own records (a
  program showing its own view) goes through the cluster, so its records follow; any other
  (an administrator's view) is asked of its agent directly.
"""

from __future__ import annotations

import anyio

from rock_core import Cluster, Host, NotFound, RockError
from rock_core.protocol import (
    Done,
    HostView,
    HostViewReply,
    ReadHostView,
    RemoveSandbox,
    SandboxReply,
    StopSandbox,
)

from ._rows import HostRow, Snapshot, snapshot_of

CAPABILITY = "top"
READ_TIMEOUT = 10.0  # seconds one host may take to answer a refresh


async def collect(
    cluster: Cluster, *, stats: bool = True, timeout: float = READ_TIMEOUT
) -> Snapshot:
    """One refresh of the live view of every host of `cluster`."""
    views: list[HostView] = []
    missing: list[HostRow] = []

    async def read(host: Host) -> None:
        conn = host.connection
        if host.state != "connected" or conn is None or conn.closed:
            missing.append(HostRow(host=host.host_id, link=host.state, error=host.last_error))
            return
        welcome = conn.welcome
        if CAPABILITY not in welcome.capabilities:
            error = f"agent {welcome.agent_version} has no live view: upgrade rock-agent there"
            missing.append(_no_view(host, "connected", error, welcome.cpus, welcome.memory))
            return
        try:
            with anyio.fail_after(timeout):
                reply = await conn.call(ReadHostView(stats=stats), HostViewReply)
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
            missing.append(_no_view(host, "slow", error, welcome.cpus, welcome.memory))
            return
        except RockError as exc:
            missing.append(_no_view(host, "error", str(exc), welcome.cpus, welcome.memory))
            return
        views.append(reply.view)

    async with anyio.create_task_group() as tg:
        for host in list(cluster.hosts.values()):
            tg.start_soon(read, host)
    return snapshot_of(views, missing)


def _no_view(host: Host, link: str, error: str, cpus: float, memory: int) -> HostRow:
    return HostRow(host=host.host_id, link=link, cpus=cpus, memory=memory, error=error)


async def stop_sandbox(cluster: Cluster, host_id: str, sandbox_id: str) -> None:
    """Stop a sandbox of the view (see the module's rules)."""
    if _ours(cluster, sandbox_id):
        await cluster.stop_sandbox(sandbox_id)
        return
    conn = _host(cluster, host_id).link()
    await conn.call(StopSandbox(sandbox_id=sandbox_id), SandboxReply)


async def delete_sandbox(cluster: Cluster, host_id: str, sandbox_id: str) -> None:
    """Delete a sandbox of the view (see the module's rules)."""
    if _ours(cluster, sandbox_id):
        await cluster.delete_sandbox(sandbox_id)
        return
    conn = _host(cluster, host_id).link()
    await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)


def _ours(cluster: Cluster, sandbox_id: str) -> bool:
    try:
        cluster.record(sandbox_id)
    except NotFound:
        return False
    return True


def _host(cluster: Cluster, host_id: str) -> Host:
    host = cluster.hosts.get(host_id)
    if host is None:
        raise NotFound(f"no host {host_id!r} in this cluster")
    return host


__all__ = ["collect", "delete_sandbox", "stop_sandbox"]
