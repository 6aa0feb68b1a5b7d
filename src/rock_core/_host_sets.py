"""Host sets and their readers: what every host source shares, and nothing of `HostSource`.

A host source (`_host_source.HostSource`) wraps a `HostReader`. The readers shipped are
`_hostfile_source`, `_slurm_source` and `_ray_source`; they import this module, never
`_host_source`, which imports them for its `from_*` constructors.

Rules:
- A reader only says which hosts there are: `snapshots()` is an async iterator whose first
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
- Polling readers (`poll`) read every `refresh` seconds of anyio's clock and yield only a set
  that differs from the last one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import anyio

from ._errors import BadRequest, RockError
from ._hosts import Connector

log = logging.getLogger("rock_core")

HostItem = str | Connector  # one host of a snapshot: an address or a connector
ToHost = Callable[[str], HostItem]  # a node name to the host that reaches it


class HostReader(Protocol):
    """Reads a cluster's host set as it changes; `HostSource(reader)` makes it a source."""

    def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        """The current host set, then each changed set; see the module's rules."""
        ...


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
    "HostReader",
    "ToHost",
    "check_refresh",
    "closing",
    "host_name",
    "poll",
    "ssh_address",
]
