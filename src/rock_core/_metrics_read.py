"""Reading the agents' metrics: every host's Prometheus text exposition, over its link.

Rules:
- One `ReadMetrics` per host, all at once (`_images.on_every_host`); an agent without the
  capability "metrics" is a `BadRequest` naming it, a host whose link is down
  `HostUnavailable`, and the hosts that answered are not lost to the one that failed only
  in the error's message (the error names every failing host).
- The text is the agent's, unparsed: parse it with
  ``prometheus_client.parser.text_string_to_metric_families``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._cluster import Cluster
from ._errors import NotFound
from ._images import on_every_host
from ._messages_metrics import MetricsReply, ReadMetrics


async def read_metrics(cluster: Cluster, hosts: Iterable[str] | None = None) -> dict[str, str]:
    """The metrics of every connected host's agent (or of `hosts`), as exposition text by
    host id; an unknown host id is `NotFound`."""
    links = cluster.hosts
    if hosts is not None:
        wanted = list(hosts)
        unknown = [h for h in wanted if h not in links]
        if unknown:
            known = ", ".join(sorted(links)) or "none"
            raise NotFound(f"no host {', '.join(map(repr, unknown))} (hosts: {known})")
        links = {h: links[h] for h in wanted}
    replies = await on_every_host(
        links, ReadMetrics, MetricsReply, capability=("metrics", "read metrics")
    )
    return {host_id: reply.text for host_id, reply in replies.items()}


__all__ = ["read_metrics"]
