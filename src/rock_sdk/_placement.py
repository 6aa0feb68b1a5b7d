"""Where a `Sandbox` runs: the cluster it was given, or its event loop's shared local core.

Rules:
- A placement given no cluster borrows the shared embedded core (`_embedded.borrow`) when it
  creates the sandbox, and gives it back when the sandbox is deleted or its creation fails.
  It holds no task and no task group of its own (the shared core's task is the event loop's),
  so any task may create, use or delete the sandbox.
- `record` is the core's record of the sandbox once it is created, None before.
- Deleting is shielded: a cancelled caller must not leave the container behind. The borrowed
  core is given back whatever happens.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import anyio
from msgspec import UnsetType

from rock_core import BadRequest, Cluster, SandboxRecord, SandboxState
from rock_core.protocol import SandboxSpec

from ._embedded import SharedCluster, borrow


@runtime_checkable
class HasCore(Protocol):
    """An SDK cluster: anything that wraps a core `Cluster` as `core`."""

    @property
    def core(self) -> Cluster: ...


def core_of(cluster: object, alternative: str = "") -> Cluster:
    """The core `Cluster` of `cluster` (itself, or what it wraps); `BadRequest` naming what is
    accepted (a cluster, or `alternative`) for anything else."""
    if isinstance(cluster, HasCore):
        return cluster.core
    if not isinstance(cluster, Cluster):
        accepted = f"a cluster (open_cluster) {alternative}".rstrip()
        raise BadRequest(f"cluster must be {accepted}, got {cluster!r}")
    return cluster


class Placement:
    """The cluster of one sandbox (None until a stand-alone one is created) and its record."""

    def __init__(self, cluster: Cluster | None) -> None:
        self.cluster = cluster
        self.record: SandboxRecord | None = None
        self._shared: SharedCluster | None = None  # the borrowed embedded core, if any

    async def create(
        self, spec: SandboxSpec, sandbox_id: str | None, queue_timeout: float | UnsetType | None
    ) -> SandboxRecord:
        """Create the sandbox on the given cluster, or on the borrowed shared core
        (`queue_timeout` UNSET: the cluster's)."""
        if self.cluster is None:
            self._shared = await borrow()
            self.cluster = self._shared.cluster
        assert self.cluster is not None
        try:
            self.record = await self.cluster.create_sandbox(
                spec, sandbox_id=sandbox_id, queue_timeout=queue_timeout
            )
        except BaseException:
            await self.give_back()
            raise
        return self.record

    async def delete(self) -> None:
        """Delete the sandbox (if it was created) and give back the borrowed core."""
        record, cluster = self.record, self.cluster
        if record is None or cluster is None:
            return
        try:
            if record.state is not SandboxState.DELETED:  # else the cluster may have forgotten it
                with anyio.CancelScope(shield=True):
                    await cluster.delete_sandbox(record.sandbox_id)
        finally:
            await self.give_back()

    async def give_back(self) -> None:
        """Give back the borrowed shared core, if any (the last user's give-back closes it)."""
        if self._shared is not None:
            shared, self._shared = self._shared, None
            self.cluster = None
            await shared.give_back()
