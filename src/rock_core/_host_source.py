"""Host sources: a cluster's host set read from somewhere that changes while the cluster runs.

`open_cluster(hosts=source)` takes a `HostSource` as well as a list. The kinds shipped:
`HostSource.from_hostfile` (`_hostfile_source`), `HostSource.from_slurm` (`_slurm_source`)
and `HostSource.from_ray` (`_ray_source`). The cluster follows a source with `_host_follow`.

Rules:
- A source wraps a reader (`_host_sets.HostReader`): any object with one method,
  `snapshots()`, an async iterator of host sets (the first is the current set, each next one
  the whole changed set; see `_host_sets` for the rules every reader keeps). A source of
  your own is ``HostSource(reader)``.
- The readers shipped never import this module: it imports them, for `from_*`, and they
  share their helpers through `_host_sets`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ._host_sets import HostItem, HostReader, ToHost, ssh_address
from ._hostfile_source import HostfileReader
from ._ray_source import NodeList, RayNode, RayReader
from ._slurm_source import SlurmReader


class HostSource:
    """Where a cluster's hosts come from when they may change while it runs: `reader`'s sets.

    Give one to `open_cluster(hosts=...)`: the cluster connects the first snapshot's hosts,
    connects each host that appears later (it takes placements once its agent answered), and
    drains each host that disappears (no new placements; its sandboxes stay until they end,
    then its link is closed). A host that comes back before that is undrained.
    """

    def __init__(self, reader: HostReader) -> None:
        self.reader = reader

    def __repr__(self) -> str:
        return repr(self.reader)

    def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        """The current host set, then each changed set (the reader's; see `_host_sets`)."""
        return self.reader.snapshots()

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
        to_host = host or ssh_address(user, port)
        return HostSource(HostfileReader(path, refresh=refresh, host=to_host))

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
        return HostSource(SlurmReader(nodelist=nodelist, host=host or ssh_address(user, port)))

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
    ) -> RayHostSource:
        """The alive nodes of a Ray cluster that have CPUs, followed as they join and leave.

        Each node's ``NodeManagerAddress`` is its SSH host. `label` keeps only nodes with that
        label (``key=value``, or ``key`` for any value) or a custom resource of that name.
        The node list is read every `refresh` seconds, through ``ray.nodes()`` (connecting
        with ``ray.init(address)`` unless this process already did); `nodes` replaces that
        with any callable returning the same dicts (tests, benchmarks). Needs the ``ray``
        extra, imported only by `_ray_source`: `BadRequest` when it is missing. The source's
        `nodes` are Ray's view of the nodes that count at the last read.
        """
        to_host = host or ssh_address(user, port)
        reader = RayReader(address, label=label, refresh=refresh, host=to_host, nodes=nodes)
        return RayHostSource(reader)


class RayHostSource(HostSource):
    """`HostSource.from_ray`'s source, which also shows Ray's view of its nodes."""

    def __init__(self, reader: RayReader) -> None:
        super().__init__(reader)
        self._ray_reader = reader

    @property
    def nodes(self) -> list[RayNode]:
        """Ray's view of each node that counted at the last read (id, CPUs, memory, labels)."""
        return self._ray_reader.nodes


__all__ = ["HostSource", "RayHostSource"]
