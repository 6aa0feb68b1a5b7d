"""Images on every host of a cluster: list, warm (pre-pull) and prune, all hosts at once.

Each function asks every connected agent concurrently and returns a result per host id. When
some hosts fail, the others' work is still done (an image warmed there stays warm), and the
error raised is the first failing host's error class, its message naming every failing host.
Each takes `hosts` (host ids) to act on those hosts only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import anyio

from ._cluster import Cluster, Host
from ._errors import NotFound, RockError
from ._ports import HostLink
from ._progress import ProgressCallback, ProgressReporter, check_progress
from ._protocol import (
    ImageInfo,
    ImageListReply,
    ImageReply,
    ImageReport,
    ListImages,
    PruneImages,
    PruneReply,
    PruneResult,
    Reply,
    Request,
    WarmImage,
)

R = TypeVar("R", bound=Reply)


async def on_every_host(
    hosts: Mapping[str, HostLink],
    make: Callable[[], Request],
    expect: type[R],
    answered: Callable[[], None] | None = None,
    capability: tuple[str, str] = ("images", "manage images"),
) -> dict[str, R]:
    """Send one request to every host at once; the replies by host id, or the failures raised.

    `make` builds the request, once per host (each host's connection sets its id on it);
    every agent must announce `capability` (its name, and what it is needed for).

    A host whose link is down counts as failed (`HostUnavailable`). `answered()` is called
    as each host's answer (or failure) arrives.
    """
    replies: dict[str, R] = {}
    failures: dict[str, RockError] = {}

    async def ask(host_id: str, host: HostLink) -> None:
        try:
            conn = host.link()
            conn.require(*capability)
            replies[host_id] = await conn.call(make(), expect)
        except RockError as exc:
            failures[host_id] = exc
        if answered is not None:
            answered()

    async with anyio.create_task_group() as tg:
        for host_id, host in hosts.items():
            tg.start_soon(ask, host_id, host)
    if failures:
        first = next(host_id for host_id in hosts if host_id in failures)
        message = "; ".join(f"host {h}: {failures[h]}" for h in hosts if h in failures)
        error = type(failures[first])(message, **failures[first].details)
        raise error from failures[first]
    return {host_id: replies[host_id] for host_id in hosts}


def chosen_hosts(cluster: Cluster, hosts: Sequence[str] | None) -> dict[str, Host]:
    """`cluster`'s hosts, or those of the ids `hosts` (`NotFound` naming an unknown one)."""
    if hosts is None:
        return dict(cluster.hosts)
    unknown = [h for h in hosts if h not in cluster.hosts]
    if unknown:
        known = ", ".join(cluster.hosts) or "none"
        raise NotFound(f"no host {unknown[0]!r} in this cluster (hosts: {known})")
    return {h: cluster.hosts[h] for h in hosts}


async def list_images(
    cluster: Cluster, *, hosts: Sequence[str] | None = None
) -> dict[str, ImageReport]:
    """The images of every host (or of the host ids `hosts`), most recently used first, with
    their disk use."""
    replies = await on_every_host(chosen_hosts(cluster, hosts), ListImages, ImageListReply)
    return {host_id: reply.report for host_id, reply in replies.items()}


async def warm_image(
    cluster: Cluster,
    image: str,
    *,
    hosts: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, ImageInfo]:
    """Make `image` present on every host or on `hosts` (a quick no-op where it is);
    `ImageNotFound` if not.

    `progress(Progress)` counts the hosts done (unit "hosts"): an agent reports nothing
    during a pull, so a host is a step.
    """
    targets = chosen_hosts(cluster, hosts)
    reporter = ProgressReporter(check_progress(progress), "warm", "hosts", len(targets))
    reporter.start()
    replies = await on_every_host(
        targets, lambda: WarmImage(image=image), ImageReply, lambda: reporter.advance(1)
    )
    reporter.finish()
    return {host_id: reply.image for host_id, reply in replies.items()}


async def prune_images(
    cluster: Cluster,
    *,
    max_bytes: int | None = None,
    max_percent: float | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    hosts: Sequence[str] | None = None,
) -> dict[str, PruneResult]:
    """On every host, remove least recently used unused images while images take over the limit.

    Give exactly one limit: `max_bytes`, or `max_percent` of the capacity of the file system
    holding the engine's data. `only` restricts candidates to images whose every tag matches
    one of these shell patterns; `dry_run` reports what would go without removing anything;
    `hosts` (host ids) limits the prune to those hosts.
    """
    replies = await on_every_host(
        chosen_hosts(cluster, hosts),
        lambda: PruneImages(
            max_bytes=max_bytes,
            max_percent=max_percent,
            only=list(only or []),
            dry_run=dry_run,
        ),
        PruneReply,
    )
    return {host_id: reply.result for host_id, reply in replies.items()}
