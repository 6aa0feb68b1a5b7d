"""`open_admin_cluster`: an administrator's cluster over whichever of its hosts answer.

Rules:
- It is `open_cluster` with ``admin=True`` and one difference: a host that cannot be connected
  does not fail the whole cluster. It is left out and named, with its error, in
  `Cluster.unreachable` (by address), so a listing can show every other host and say which
  one it missed. Only when no host answers is the first failure raised.
- A host left out is not retried: an administrator's command is short, and says what it saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ._cluster import Cluster, connectors_for, running
from ._hosts import Connector
from ._options import ClusterOptions, cluster_options
from ._owner import local_owner


@asynccontextmanager
async def open_admin_cluster(
    hosts: Sequence[str | Connector] | str = ("local",),
    options: ClusterOptions | None = None,
    **changes: Any,
) -> AsyncIterator[Cluster]:
    """An administrator's cluster (``admin=True``) over the hosts of `hosts` that answer.

    The arguments are `open_cluster`'s. Hosts that could not be connected are in
    `Cluster.unreachable` (address: error); if none could be, the first failure is raised.
    """
    opts = cluster_options(options, **{**changes, "admin": True})
    connectors = connectors_for(hosts, opts)
    cluster = Cluster(opts.owner or local_owner(), opts.scheduler(), opts)
    async with running(cluster, connectors, partial=True):
        yield cluster


__all__ = ["open_admin_cluster"]
