"""The live view of a cluster (`rock top`, `rock_sdk.top`): its rows, how they are read from
the agents, and the Textual app that shows them.

Rules:
- Reading (`_collect`) and rows (`_rows`, `_columns`) are separate from the app (`_app`,
  `_screens`), so the one-shot tables, ``--json`` and the app show the same rows, and the data
  layer is tested without a terminal.
- Textual is imported only when the app runs, so ``import rock_sdk`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rock_core import Cluster

from ._collect import collect, delete_sandbox, stop_sandbox
from ._columns import HOST_COLUMNS, POOL_COLUMNS, SANDBOX_COLUMNS
from ._rows import SORT_KEYS, HostRow, PoolRow, SandboxRow, Snapshot, by_owner, sort_rows

if TYPE_CHECKING:
    from .._cluster import SandboxCluster
    from ._app import TopApp


def top_app(cluster: Cluster | SandboxCluster, *, interval: float = 2.0) -> TopApp:
    """The Textual app of the live view of `cluster` (a core `Cluster` or the SDK's)."""
    from ._app import TopApp

    core = cluster if isinstance(cluster, Cluster) else cluster.core
    return TopApp(core, interval=interval)


async def top(cluster: Cluster | SandboxCluster, *, interval: float = 2.0) -> None:
    """Show the live view of `cluster` in the terminal until the user quits (``q``).

    Run it on the cluster's own event loop (inside its ``async with``): hosts, sandboxes and
    the warm pools of every program using them, refreshed every `interval` seconds.
    """
    await top_app(cluster, interval=interval).run_async()


__all__ = [
    "HOST_COLUMNS",
    "POOL_COLUMNS",
    "SANDBOX_COLUMNS",
    "SORT_KEYS",
    "HostRow",
    "PoolRow",
    "SandboxRow",
    "Snapshot",
    "by_owner",
    "collect",
    "delete_sandbox",
    "sort_rows",
    "stop_sandbox",
    "top",
    "top_app",
]
