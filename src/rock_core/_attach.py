"""How a warm pool and its cluster reach each other, without importing each other.

Rules:
- A pool sees its cluster only as a `PoolSite`; a cluster sees a pool only as an `Attachment`.
  `_pool` imports neither `_cluster` nor its classes, and `_cluster` imports nothing of `_pool`.
- Room is asked, never computed by the pool: `startable` answers how many creates of a demand
  could start now, and `capacity_changed` is the event to wait on instead of polling.
- An attachment runs in the cluster's task group: it lives no longer than the cluster, and the
  cluster halts every attachment before it deletes its own sandboxes on exit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc
from msgspec import UNSET, UnsetType

if TYPE_CHECKING:
    from ._create_times import CreateTimes
    from ._protocol import SandboxSpec
    from ._records import SandboxRecord
    from ._scheduler import Demand
    from ._statistics import PoolStatistics

Run = Callable[..., Awaitable[None]]  # `run(*, task_status)`, started with `TaskGroup.start`


class Attachment(Protocol):
    """Something that lives inside a cluster (a warm pool)."""

    @property
    def name(self) -> str:
        """Unique among the cluster's attachments."""
        ...

    def statistics(self) -> PoolStatistics:
        """Its figures, reported with the cluster's."""
        ...

    async def halt(self) -> None:
        """Start nothing more (the cluster is about to delete its sandboxes); return once its
        work in flight has stopped."""
        ...


class PoolSite(Protocol):
    """What a warm pool may ask of the cluster it fills from."""

    create_times: CreateTimes  # a pool counts its hand-outs there (warm or cold)

    async def create_sandbox(
        self,
        spec: SandboxSpec,
        *,
        sandbox_id: str | None = None,
        queue_timeout: float | UnsetType | None = UNSET,
    ) -> SandboxRecord:
        """Place and start a sandbox of `spec` (as `Cluster.create_sandbox`)."""
        ...

    async def delete_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Delete a sandbox of this cluster (as `Cluster.delete_sandbox`)."""
        ...

    async def stop_sandbox(self, sandbox_id: str, *, timeout: float = 10.0) -> SandboxRecord:
        """Stop a sandbox, keeping its files (as `Cluster.stop_sandbox`; a pool's reset)."""
        ...

    async def start_sandbox(self, sandbox_id: str) -> SandboxRecord:
        """Start a stopped sandbox again (as `Cluster.start_sandbox`)."""
        ...

    def record(self, sandbox_id: str) -> SandboxRecord:
        """The record of a sandbox of this cluster (`SandboxNotFound` if none)."""
        ...

    def startable(self, demand: Demand) -> int:
        """How many creates of `demand` the hosts could start right now with nobody waiting
        (0 while any create waits in the queue: user creates go first)."""
        ...

    def capacity_changed(self) -> anyio.Event:
        """An event set the next time room or start slots may have grown (a release, a start
        finished, a host joined or stopped draining)."""
        ...

    async def attach(self, attachment: Attachment, run: Run) -> None:
        """Register `attachment` and start `run` in the cluster's task group; it is
        unregistered when `run` returns. `AlreadyExists` for a second one of the same name,
        `BadRequest` if the cluster is not open."""
        ...

    def detach(self, attachment: Attachment) -> None:
        """Unregister `attachment` (no-op if it is not registered)."""
        ...


__all__ = ["Attachment", "PoolSite", "Run"]
