"""Checkpoints for SDK users: `Sandbox.checkpoint()` and what a `Checkpoint` does (fork,
delete), over the core's cluster methods (`rock_core.Cluster.checkpoint`, `fork`,
`delete_checkpoint`).

Rules:
- A `Checkpoint` remembers the cluster it was made on; `fork` starts sandboxes there (on any of
  its hosts: the core streams the checkpoint to a host that lacks it) and returns `Sandbox`
  objects of that cluster, `delete` removes it on every host.
- A fork's config gives everything but the image (its image is ignored: it is the
  checkpoint's). See docs/checkpoints.md for what a fork keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from rock_core import BadRequest, Cluster
from rock_core import Checkpoint as CoreCheckpoint
from rock_core.protocol import CheckpointInfo

from ._config import SandboxConfig

if TYPE_CHECKING:
    from ._sandbox import Sandbox


class Checkpoint:
    """A sandbox's file system frozen as an image on its host (see docs/checkpoints.md).

    `checkpoint_id`, `host_id` (where it was made), `image` (``rock-checkpoint:<id>``, usable
    as any config's or pool's image), `size` (bytes), `created` (unix time), `source` (the
    sandbox it was made from) and `kept` (it outlives its owner).
    """

    def __init__(self, value: CoreCheckpoint, cluster: Cluster) -> None:
        self.value = value
        self.cluster = cluster
        self.checkpoint_id = value.checkpoint_id
        self.host_id = value.host_id
        self.image = value.image
        self.size = value.size
        self.created = value.created
        self.source = value.source
        self.kept = value.kept

    def __repr__(self) -> str:
        return f"Checkpoint({self.checkpoint_id!r}, host={self.host_id!r}, source={self.source!r})"

    async def fork(self, n: int, config: SandboxConfig | None = None) -> list[Sandbox]:
        """Start `n` sandboxes from this checkpoint with `config`'s settings (not its image)."""
        return await fork(self.cluster, self, n, config)

    async def delete(self) -> list[CheckpointInfo]:
        """Remove it on every host; return the copies kept because forks still use them."""
        return await self.cluster.delete_checkpoint(self.value)


async def fork(
    cluster: Cluster, checkpoint: Checkpoint | str, n: int, config: SandboxConfig | None = None
) -> list[Sandbox]:
    """`n` new running sandboxes of `cluster` from `checkpoint` (a `Checkpoint` or its id)."""
    from ._sandbox import Sandbox  # the Sandbox module imports this one

    if config is not None and not isinstance(config, SandboxConfig):
        raise BadRequest(f"config must be a SandboxConfig or None, got {config!r}")
    spec = (config or SandboxConfig()).to_spec()
    target = checkpoint.value if isinstance(checkpoint, Checkpoint) else checkpoint
    records = await cluster.fork(target, n, spec)
    return [Sandbox.attach(cluster, record.sandbox_id) for record in records]


class _Placed(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    @property
    def cluster(self) -> Cluster: ...


class Checkpointing:
    """`Sandbox.checkpoint`."""

    async def checkpoint(
        self: _Placed, name: str | None = None, *, keep: bool = False
    ) -> Checkpoint:
        """Freeze this running sandbox's file system as a checkpoint on its host.

        It pauses only while the engine copies its changes. `name` is the checkpoint's id
        (lowercase letters, digits, ``.``, ``_``, ``-``; default: a new ``ck-...``). The
        checkpoint goes with this sandbox's owner (the program) unless `keep` is True.
        """
        value = await self.cluster.checkpoint(self.sandbox_id, name=name, keep=keep)
        return Checkpoint(value, self.cluster)


__all__ = ["Checkpoint", "Checkpointing", "fork"]
