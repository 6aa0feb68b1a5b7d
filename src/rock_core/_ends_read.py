"""Reading the agents' logs of sandbox ends (`ReadEnds`), for programs that own none of them.

Rules:
- One `ReadEnds` per host, all at once (`_images.on_every_host`); an agent without the
  capability "end-reasons" is a `BadRequest` naming it, a host whose link is down
  `HostUnavailable`; an unknown host id is `NotFound`, naming the known ones.
- Each agent's log is short and in its memory (see `_messages_events`): this reads what the
  agents remember, not a history; a program that owns its sandboxes follows them live with
  `Cluster.events()` instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._cluster import Cluster
from ._images import chosen_hosts, on_every_host
from ._messages_events import CAPABILITY, EndsReply, ReadEnds, SandboxEnd


async def read_ends(
    cluster: Cluster, hosts: Iterable[str] | None = None, *, since: float = 0.0, of: str = ""
) -> dict[str, list[SandboxEnd]]:
    """The ends every connected host's agent (or each of `hosts`) remembers after `since`
    (unix time), only sandbox `of`'s if given; by host id, oldest first."""
    replies = await on_every_host(
        chosen_hosts(cluster, None if hosts is None else list(hosts)),
        lambda: ReadEnds(since=since, of=of),
        EndsReply,
        capability=(CAPABILITY, "read the ends of sandboxes"),
    )
    return {host_id: reply.ends for host_id, reply in replies.items()}


__all__ = ["read_ends"]
