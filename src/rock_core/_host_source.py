"""Host sources: a cluster's host set read from somewhere that changes while the cluster runs.

`open_cluster(hosts=source)` takes a `HostSource` as well as a list. The kinds shipped:
`HostSource.from_hostfile` (`_hostfile_source`), `HostSource.from_slurm` (`_slurm_source`)
and `HostSource.from_ray` (`_ray_source`). The cluster follows a source with `_host_follow`.

Rules:
- A source only says which hosts there are: `snapshots()` is an async iterator whose first
  item is the current host set and each next item a changed one (the whole set, never a
  difference). It ends when the set can no longer change (a Slurm job's nodes). It decides
  nothing about placement: the cluster's scheduler stays the only place that does.
- A host in a snapshot is an address (``ssh://...``, ``unix://...``, ``local``) or a
  `Connector`; the cluster tells hosts apart by that address or the connector's name.
- A node name becomes a host through `host=`: a callable from the name to an address or a
  connector; by default ``ssh://[user@]name[:port]`` (`ssh_address`), whose SSH settings are
  the cluster's `ssh` option.
- The first snapshot's failure is the caller's (raised from `open_cluster`); a later read
  that fails is logged and the last set is kept (a hostfile caught mid-write, a Ray GCS that
  restarts), so a hiccup of the source never drains a healthy host.
- Polling sources (`poll`) read every `refresh` seconds of anyio's clock and yield only a set
  that differs from the last one.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ._errors import BadRequest, RockError
from ._hosts import Connector

if TYPE_CHECKING:
    from ._ray_source import NodeList

log = logging.getLogger("rock_core")

HostItem = str | Connector  # one host of a snapshot: an address or a connector
ToHost = Callable[[str], HostItem]  # a node name to the host that reaches it


class HostSource(abc.ABC):
    """Where a cluster's hosts come from when they may change while it runs.

    Give one to `open_cluster(hosts=...)`: the cluster connects the first snapshot's hosts,
    connects each host that appears later (it takes placements once its agent answered), and
    drains each host that disappears (no new placements; its sandboxes stay until they end,
    then its link is closed). A host that comes back before that is undrained.
    """

    @abc.abstractmethod
    def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        """The current host set, then each changed set; see the module's rules."""

    @staticmethod
    def from_hostfile(
        path: str,
        *,
        refresh: float = 2.0,
        user: str | None = None,
        port: int | None = None,
        host: ToHost | None = None,
    ) -> HostSource:
        """The hosts listed in the file at `path`, read again when it changes.

        One host per line: a node name (reached as ``ssh://[user@]name[:port]``) or a full
        address; ``[01-40]`` ranges expand; ``#`` starts a comment; blank lines are skipped;
        words after the first (an MPI hostfile's ``slots=8``) are ignored. The file's
        modification time is polled every `refresh` seconds.
        """
        from ._hostfile_source import HostfileSource

        return HostfileSource(path, refresh=refresh, host=host or ssh_address(user, port))

    @staticmethod
    def from_slurm(
        *,
        nodelist: str | None = None,
        user: str | None = None,
        port: int | None = None,
        host: ToHost | None = None,
    ) -> HostSource:
        """The nodes of this Slurm job: ``scontrol show hostnames $SLURM_JOB_NODELIST``.

        `nodelist` overrides the environment's (``node[01-04],gpu7``). A job's nodes do not
        change, so the source yields one snapshot. `BadRequest` outside a Slurm job or
        without ``scontrol``.
        """
        from ._slurm_source import SlurmSource

        return SlurmSource(nodelist=nodelist, host=host or ssh_address(user, port))

    @staticmethod
    def from_ray(
        address: str = "auto",
        *,
        label: str | None = None,
        refresh: float = 5.0,
        user: str | None = None,
        port: int | None = None,
        host: ToHost | None = None,
        nodes: NodeList | None = None,
    ) -> HostSource:
        """The alive nodes of a Ray cluster that have CPUs, followed as they join and leave.

        Each node's ``NodeManagerAddress`` is its SSH host. `label` keeps only nodes with that
        label (``key=value``, or ``key`` for any value) or a custom resource of that name.
        The node list is read every `refresh` seconds, through ``ray.nodes()`` (connecting
        with ``ray.init(address)`` unless this process already did); `nodes` replaces that
        with any callable returning the same dicts (tests, benchmarks). Needs the ``ray``
        extra, imported only here: `BadRequest` when it is missing.
        """
        from ._ray_source import RaySource

        return RaySource(
            address, label=label, refresh=refresh, host=host or ssh_address(user, port), nodes=nodes
        )


def ssh_address(user: str | None = None, port: int | None = None) -> ToHost:
    """Node name to ``ssh://[user@]name[:port]``; a name that is already an address stays."""
    if user is not None and (not isinstance(user, str) or not user or "@" in user):
        raise BadRequest(f"user must be None or a user name, got {user!r}")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise BadRequest(f"port must be None or an int, got {port!r}")
    if port is not None and not 0 < port < 65536:
        raise BadRequest(f"port must be between 1 and 65535, got {port}")

    def to_host(name: str) -> str:
        if name == "local" or "://" in name:
            return name
        who = f"{user}@" if user else ""
        where = f":{port}" if port is not None else ""
        return f"ssh://{who}{name}{where}"

    return to_host


def check_refresh(refresh: object) -> float:
    """A polling period: a positive, finite number of seconds (`BadRequest` otherwise)."""
    if (
        isinstance(refresh, bool)
        or not isinstance(refresh, int | float)
        or not math.isfinite(refresh)
        or refresh <= 0
    ):
        raise BadRequest(f"refresh must be a positive, finite number of seconds, got {refresh!r}")
    return float(refresh)


def host_name(item: HostItem) -> str:
    """How the cluster tells hosts of a snapshot apart: the address, or the connector's name."""
    return item if isinstance(item, str) else item.name


@asynccontextmanager
async def closing(
    sets: AsyncIterator[Sequence[HostItem]],
) -> AsyncIterator[AsyncIterator[Sequence[HostItem]]]:
    """Yield `sets`; on exit close it if it can be closed (an async generator's `aclose`)."""
    try:
        yield sets
    finally:
        aclose = getattr(sets, "aclose", None)
        if aclose is not None:
            await aclose()


async def poll(
    read: Callable[[], Awaitable[Sequence[HostItem] | None]], refresh: float, what: str
) -> AsyncIterator[Sequence[HostItem]]:
    """Yield `read()`'s first set, then every `refresh` seconds a set that changed.

    `read` returns None for "unchanged, not read again" (a hostfile's same mtime). A later
    read's `RockError` or `OSError` is logged and the last set kept.
    """
    first = await read()
    last = list(first or ())
    yield last
    while True:
        await anyio.sleep(refresh)
        try:
            seen = await read()
        except (RockError, OSError) as exc:
            log.warning("%s: cannot read the host set (keeping the last one): %s", what, exc)
            continue
        if seen is None:
            continue
        now = list(seen)
        if [host_name(h) for h in now] != [host_name(h) for h in last]:
            last = now
            yield now


__all__ = [
    "HostItem",
    "HostSource",
    "ToHost",
    "check_refresh",
    "closing",
    "host_name",
    "poll",
    "ssh_address",
]
