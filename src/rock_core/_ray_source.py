"""`HostSource.from_ray`'s reader: the alive Ray nodes with CPUs, as they join and leave.

Rules:
- The node list is Ray's own: ``ray.nodes()`` (the GCS node table: ``NodeID``, ``Alive``,
  ``NodeManagerAddress``, ``Resources``, ``Labels``), read in a worker thread every `refresh`
  seconds. A process that has not joined the Ray cluster joins it with
  ``ray.init(address=...)`` at the first read, and leaves with ``ray.shutdown()`` when the
  source ends; one that did (a verl or ROLL trainer) is used as it is.
- A node counts when it is alive, has ``CPU > 0`` and passes the `label` filter: ``key=value``
  matches a node label; ``key`` alone matches a label of that name or a custom resource with an
  amount above zero.
- Its ``NodeManagerAddress`` is its host (through `host=`). Several Ray nodes on one machine
  share that address: they are one host of the snapshot (the first in Ray's order). `nodes`
  keeps Ray's view of each node that counts (id, CPUs, memory), for reading and logging; the
  core's host capacity is still what each agent reports.
- ``ray`` is the optional ``ray`` extra, imported only by this module and only when no `nodes`
  callable replaces it: without it, `BadRequest` says how to install it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from ._errors import BadRequest, ProtocolError, TransportError
from ._host_sets import HostItem, ToHost, check_refresh, closing, poll

log = logging.getLogger("rock_core")

NodeList = Callable[[], Sequence[Mapping[str, Any]]]  # what ray.nodes() returns


@dataclass(frozen=True)
class RayNode:
    """Ray's view of one node that counts as a host."""

    node_id: str
    address: str  # NodeManagerAddress
    cpus: float
    memory: int  # bytes, Ray's "memory" resource
    labels: Mapping[str, str]


def ray_nodes(table: Sequence[Mapping[str, Any]], label: str | None) -> list[RayNode]:
    """The nodes of a ``ray.nodes()`` table that count (see the module's rules), in order."""
    out: list[RayNode] = []
    for entry in table:
        resources = entry.get("Resources") or {}
        labels = entry.get("Labels") or {}
        if not entry.get("Alive") or float(resources.get("CPU", 0) or 0) <= 0:
            continue
        if label is not None and not _matches(label, labels, resources):
            continue
        out.append(
            RayNode(
                node_id=str(entry.get("NodeID", "")),
                address=str(entry.get("NodeManagerAddress", "")),
                cpus=float(resources.get("CPU", 0)),
                memory=int(resources.get("memory", 0) or 0),
                labels=dict(labels),
            )
        )
    return out


def _matches(label: str, labels: Mapping[str, str], resources: Mapping[str, Any]) -> bool:
    key, equals, value = label.partition("=")
    if equals:
        return labels.get(key) == value
    return key in labels or float(resources.get(key, 0) or 0) > 0


class RayReader:
    """Reads the hosts of a Ray cluster (a `HostReader`); see the module's rules."""

    def __init__(
        self,
        address: str,
        *,
        label: str | None,
        refresh: float,
        host: ToHost,
        nodes: NodeList | None,
    ) -> None:
        if not isinstance(address, str) or not address:
            raise BadRequest(f"address must be a Ray address such as 'auto', got {address!r}")
        if label is not None and (not isinstance(label, str) or not label.partition("=")[0]):
            raise BadRequest(f"label must be None, 'key' or 'key=value', got {label!r}")
        self.address = address
        self.label = label
        self.refresh = check_refresh(refresh)
        self.host = host
        ray: Any = None if nodes is not None else _import_ray()
        self._ray: Any = ray
        self._table: NodeList = nodes if nodes is not None else ray.nodes
        self.nodes: list[RayNode] = []  # the last read's nodes that count

    def __repr__(self) -> str:
        return f"HostSource.from_ray({self.address!r}, label={self.label!r})"

    async def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        """The nodes' hosts, then the hosts again whenever a node joined or left."""
        joined = False
        try:
            if self._ray is not None and not self._ray.is_initialized():
                await anyio.to_thread.run_sync(self._join)
                joined = True
            async with closing(poll(self._read, self.refresh, repr(self))) as sets:
                async for hosts in sets:
                    yield hosts
        finally:
            if joined:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._ray.shutdown)

    def _join(self) -> None:
        try:
            self._ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # Ray's own errors (ConnectionError, RuntimeError...)
            raise TransportError(f"cannot join the Ray cluster at {self.address!r}: {exc}") from exc

    async def _read(self) -> list[HostItem]:
        try:
            table = await anyio.to_thread.run_sync(self._table)
        except Exception as exc:  # Ray's own errors, or the given callable's
            raise TransportError(f"cannot read Ray's node list: {exc!r}") from exc
        try:
            self.nodes = ray_nodes(table, self.label)
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"Ray's node list is malformed: {exc!r}") from exc
        hosts: dict[str, HostItem] = {}
        for node in self.nodes:
            if node.address and node.address not in hosts:
                hosts[node.address] = self.host(node.address)
        return list(hosts.values())


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BadRequest(
            f"HostSource.from_ray needs ray: pip install '.[ray]' from a clone of rock-kit ({exc})"
        ) from exc
    return ray


__all__ = ["NodeList", "RayNode", "RayReader", "ray_nodes"]
