"""Metrics for SDK programs: the cluster's own (`ClusterCollector`) and its agents'
(`read_metrics`). See docs/metrics.md.

    registry = prometheus_client.CollectorRegistry()
    registry.register(rock_sdk.metrics.ClusterCollector(cluster))
    texts = await rock_sdk.metrics.read_metrics(cluster)  # host id: exposition text

Rules:
- A collector reads the cluster at scrape time; register it in a registry of your own (the
  kit never touches prometheus_client's global registry).
- The agents' metrics come over the cluster's links (SSH too), as text for a scraper to
  parse or pass on.
"""

from __future__ import annotations

from collections.abc import Iterable

from rock_core import Cluster
from rock_core import read_metrics as read_core_metrics
from rock_core.metrics import ClusterCollector as CoreCollector

from ._cluster import SandboxCluster


class ClusterCollector(CoreCollector):
    """`rock_core.metrics.ClusterCollector` for an SDK cluster (or a core one)."""

    def __init__(self, cluster: SandboxCluster | Cluster) -> None:
        super().__init__(cluster.core if isinstance(cluster, SandboxCluster) else cluster)


async def read_metrics(
    cluster: SandboxCluster | Cluster, hosts: Iterable[str] | None = None
) -> dict[str, str]:
    """Every connected agent's metrics (or `hosts`'), as exposition text by host id."""
    core = cluster.core if isinstance(cluster, SandboxCluster) else cluster
    return await read_core_metrics(core, hosts)


__all__ = ["ClusterCollector", "read_metrics"]
