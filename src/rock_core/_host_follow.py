"""Following a `HostSource`: the cluster connects hosts that appear and drains those that go.

Rules:
- The follower is one task of the cluster's group (`run`). It connects the first snapshot's
  hosts as a list is connected (all at once, the first failure raised from `open_cluster`),
  then applies each next snapshot by difference, by host name (an address, or a connector's
  name; a host listed twice counts once). A bad address in a later snapshot is logged and left
  out; the others still count.
- A host that appears gets its own supervised link (`HostLinks.supervise`) in a cancel scope
  of its own. It takes placements once its agent answered and was reconciled. Until then a
  failed connect is logged, kept in `Cluster.unreachable`, and retried with the supervisor's
  backoff for as long as the source lists the host.
- A host that goes is drained at once (`Cluster.drain_host`: no new placements), and keeps its
  sandboxes until each has ended (deleted, failed or lost). Then its link is closed and the
  host is reported down and lost, so the scheduler forgets it; it stays in `Cluster.hosts`.
- A host that comes back while it drains is undrained; one that comes back after its link was
  closed is connected again as the same host (`known`), and reconciled.
- A source that ends leaves the last host set as it is. A source whose read fails later is
  the source's to handle (`_host_sets.poll` keeps the last set).
- The follower reaches its cluster only through `FollowedCluster`, the little of `Cluster`
  it uses, so this module does not import `_cluster` (which imports it).
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Sequence
from typing import Protocol

import anyio
import anyio.abc

from ._cluster_events import Do, Event, GraceOver, LinkDown
from ._connection import unwrap_single_errors
from ._errors import BadRequest, RockError
from ._host_links import HostLinks
from ._host_sets import HostItem, closing
from ._host_source import HostSource
from ._hosts import AddressConnector, Connector
from ._link import LinkState
from ._options import ClusterOptions
from ._records import Host, SandboxRecord
from ._states import SandboxState
from ._supervisor import backoff

log = logging.getLogger("rock_core")

ENDED = frozenset({SandboxState.DELETED, SandboxState.FAILED, SandboxState.LOST})
RECHECK = 1.0  # seconds between two looks at a draining host when nothing else wakes us
REMOVED = "removed by its host source"


class FollowedCluster(Protocol):
    """What the follower uses of the cluster it keeps in step with a source (`Cluster` is one)."""

    _links: HostLinks  # connects and supervises host links
    options: ClusterOptions  # `ssh`, for a listed address
    unreachable: dict[str, RockError]  # by address: listed hosts that do not answer yet

    @property
    def hosts(self) -> dict[str, Host]:
        """Every host that ever joined, by id."""
        ...

    def records(self) -> list[SandboxRecord]:
        """Every sandbox of the cluster not yet forgotten."""
        ...

    def drain_host(self, host_id: str, draining: bool = True) -> None:
        """Stop (or resume) placing new sandboxes on a host."""
        ...

    def capacity_changed(self) -> anyio.Event:
        """Set the next time room may have grown (a sandbox ended, among others)."""
        ...

    def _handle(self, event: Event) -> list[Do]:
        """Report `event` to the cluster's state and perform what it asks."""
        ...


class _Link:
    """One host the source listed: the scope its link runs in, and its host id once known."""

    def __init__(self, item: HostItem) -> None:
        self.item = item
        self.scope = anyio.CancelScope()
        self.closed = anyio.Event()
        self.host_id: str | None = None
        self.retiring: anyio.CancelScope | None = None  # while it drains
        self.retired = False  # a `_retire` of this link runs (a second one would start it twice)
        self.finished = False  # its link was closed and the host forgotten


class HostFollower:
    """Keeps `cluster`'s hosts in step with `source`; see the module's rules."""

    def __init__(self, cluster: FollowedCluster, source: HostSource) -> None:
        self.cluster = cluster
        self.source = source
        self.links: dict[str, _Link] = {}  # every host the source listed, by name
        self.wanted: set[str] = set()  # the names of the last snapshot

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Connect the first snapshot, report started, then follow the next ones."""
        with unwrap_single_errors():
            await self._run(task_status)

    async def _run(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with (
            closing(self.source.snapshots()) as sets,
            anyio.create_task_group() as tg,
        ):
            first: Sequence[HostItem] = await anext(sets, [])
            connectors: list[Connector] = []
            for item in first:
                connector = self._connector(item)
                if connector.name not in self.links:  # a host listed twice is one host
                    self.links[connector.name] = _Link(item)
                    connectors.append(connector)
            self.wanted = {c.name for c in connectors}
            keep = functools.partial(self._keep, retry=False)
            await self.cluster._links.connect_all(tg, connectors, run=keep)
            task_status.started()
            async for hosts in sets:
                self.apply(tg, hosts)

    def apply(self, tg: anyio.abc.TaskGroup, hosts: Sequence[HostItem]) -> None:
        """Connect the hosts new in `hosts`; drain the ones missing from it."""
        items: dict[str, HostItem] = {}
        for item in hosts:
            try:
                items[self._connector(item).name] = item
            except BadRequest as exc:  # a bad address in a later set: the others still count
                log.warning("host source %r: host %r left out: %s", self.source, item, exc)
        gone, self.wanted = self.wanted - set(items), set(items)
        for name, item in items.items():
            link = self.links.get(name)
            if link is None or link.finished:
                self._start(tg, item, None if link is None else link.host_id)
                log.info("host %s joined the host source", name)
            elif link.retiring is not None:
                link.retiring.cancel()
                link.retiring = None
                if link.host_id is not None:
                    self.cluster.drain_host(link.host_id, False)
                log.info("host %s is back in the host source: undrained", name)
            # else: listed still, or its link is closing (`_retire` starts it again)
        for name in gone:
            tg.start_soon(self._retire, tg, name)

    def _start(self, tg: anyio.abc.TaskGroup, item: HostItem, host_id: str | None) -> None:
        """Keep a link to `item` (as host `host_id` if it was connected before)."""
        connector = self._connector(item)
        link = self.links[connector.name] = _Link(item)
        link.host_id = host_id
        if host_id is not None:
            self.cluster.drain_host(host_id, False)
        tg.start_soon(functools.partial(self._keep, connector, retry=True))

    def _connector(self, item: HostItem) -> Connector:
        return AddressConnector(item, self.cluster.options.ssh) if isinstance(item, str) else item

    async def _keep(
        self,
        connector: Connector,
        *,
        retry: bool,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the link of one listed host until the follower closes it."""
        name = connector.name
        link = self.links[name]
        failures = 0
        try:
            with link.scope:
                while True:
                    supervise = functools.partial(
                        self.cluster._links.supervise, connector, known=link.host_id
                    )
                    try:
                        with unwrap_single_errors():
                            async with anyio.create_task_group() as tg:
                                await tg.start(supervise)
                                link.host_id = self._host_id(name)
                                self.cluster.unreachable.pop(name, None)
                                task_status.started()
                    except RockError as exc:
                        if not retry:
                            raise
                        self.cluster.unreachable[name] = exc
                        failures += 1
                        log.warning("cannot connect to host %s (will retry): %s", name, exc)
                        await anyio.sleep(backoff(failures, random.uniform(0.5, 1.5)))
        finally:
            link.closed.set()

    def _host_id(self, name: str) -> str | None:
        for host in self.cluster.hosts.values():
            if host.address == name:
                return host.host_id
        return None

    async def _retire(self, tg: anyio.abc.TaskGroup, name: str) -> None:
        """Drain a host the source no longer lists; close its link once its sandboxes ended."""
        link = self.links[name]
        if link.retired or name in self.wanted:  # it left again while its link closed, or
            return  # came back before this task ran
        link.retired = True
        try:
            await self._close(tg, name, link)
        finally:
            link.retired = False

    async def _close(self, tg: anyio.abc.TaskGroup, name: str, link: _Link) -> None:
        with anyio.CancelScope() as retiring:
            link.retiring = retiring
            if link.host_id is not None:
                log.info("host %s left the host source: draining it", name)
                self.cluster.drain_host(link.host_id)
                while self.holds(link.host_id):
                    with anyio.move_on_after(RECHECK):
                        await self.cluster.capacity_changed().wait()
        if retiring.cancel_called:
            return  # it came back while it drained (`apply` undrained it)
        link.retiring = None
        link.scope.cancel()
        await link.closed.wait()
        self.cluster.unreachable.pop(name, None)
        if link.host_id is not None:
            self._forget(link.host_id)
        link.finished = True
        if name in self.wanted:  # it came back while its link closed
            self._start(tg, link.item, link.host_id)

    def holds(self, host_id: str) -> bool:
        """Whether a sandbox of this cluster on `host_id` has not ended yet."""
        records = self.cluster.records()
        return any(r.host == host_id and r.state not in ENDED for r in records)

    def _forget(self, host_id: str) -> None:
        """Report a closed link down and lost, so the scheduler forgets the host."""
        host = self.cluster.hosts[host_id]
        if host.state == LinkState.CONNECTED:
            self.cluster._handle(LinkDown(host_id, REMOVED))
        if host.state == LinkState.RECONNECTING:
            self.cluster._handle(GraceOver(host_id, host.generation))
        host.last_error = REMOVED
        log.info("host %s removed: its sandboxes ended and its link is closed", host_id)


async def connect_hosts(
    cluster: FollowedCluster,
    tg: anyio.abc.TaskGroup,
    hosts: Sequence[Connector] | HostSource,
    failed: dict[str, RockError] | None,
) -> None:
    """Connect a list of hosts (`HostLinks.connect_all`), or start following a source."""
    if isinstance(hosts, HostSource):
        await tg.start(HostFollower(cluster, hosts).run)
    else:
        await cluster._links.connect_all(tg, hosts, failed)


__all__ = ["FollowedCluster", "HostFollower", "connect_hosts"]
