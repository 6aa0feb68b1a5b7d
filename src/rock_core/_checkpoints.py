"""Checkpoints of a cluster: freeze a sandbox's file system, fork sandboxes from it on any host,
list and delete it (`CheckpointMethods`, which `Cluster` inherits).

Rules:
- The methods see the cluster only through `_Sandboxes` (its state, hosts, connections,
  creates and deletes): `_cluster` imports this module, never the reverse.
- `checkpoint` asks the sandbox's agent to commit it (see `_messages_checkpoint`); the
  sandbox pauses only while the engine copies its changes. Without a name, the id is
  ``ck-`` and 10 random hex digits. The `Checkpoint` returned is a plain value.
- `fork(checkpoint, n, spec)` starts `n` sandboxes of `spec` with the checkpoint's image, all at
  once, placed by the scheduler like any create; each host that lacks the checkpoint gets it
  streamed once (`_checkpoint_copy`). `n` is a whole number from 1 to `MAX_FORKS` (not a
  bool, not a float); a checkpoint no connected host holds is `ImageNotFound` before anything
  starts. If any fork fails, or the caller is cancelled, those that started are deleted (and
  the first failure is raised).
- `delete_checkpoint` removes the checkpoint on every connected host that holds it. A host
  where forks still use it keeps it (the engine refuses to remove an image in use): it is
  reported in the result and goes at a later delete, or with its owner. A checkpoint no host
  holds is `ImageNotFound`.
- `checkpoints()` lists what every connected host holds, one entry per (host, checkpoint).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio
import msgspec

from ._checkpoint_copy import connected, copies_of, holders
from ._connection import AgentConnection
from ._errors import BadRequest, ImageNotFound, RockError
from ._messages_checkpoint import (
    CAPABILITY,
    CheckpointInfo,
    CheckpointListReply,
    CheckpointReply,
    CheckpointSandbox,
    ListCheckpoints,
    RemoveCheckpoint,
    checkpoint_image,
)
from ._protocol import SandboxSpec

if TYPE_CHECKING:
    from ._cluster_state import ClusterState
    from ._records import Host, SandboxRecord

MAX_FORKS = 10_000  # sandboxes one fork starts at most (the default `max_queue`)


@dataclass(frozen=True)
class Checkpoint:
    """A sandbox's file system frozen as an image on the host it ran on (see `fork`)."""

    checkpoint_id: str
    host_id: str  # where it was made
    image: str  # the image reference a fork starts from: ``rock-checkpoint:<id>``
    size: int  # bytes of the image's layers
    created: float  # unix time
    source: str  # the sandbox it was made from
    kept: bool = False  # outlives its owner

    @classmethod
    def from_info(cls, info: CheckpointInfo) -> Checkpoint:
        """The value of an agent's report."""
        return cls(
            checkpoint_id=info.checkpoint_id,
            host_id=info.origin or info.host_id,
            image=info.image,
            size=info.size,
            created=info.created,
            source=info.source,
            kept=info.kept,
        )


def checkpoint_id_of(checkpoint: Checkpoint | str) -> str:
    """The id of a `Checkpoint`, of an id, or of an image reference ``rock-checkpoint:<id>``."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint.checkpoint_id
    if not isinstance(checkpoint, str) or not checkpoint:
        raise BadRequest(f"expected a Checkpoint or a checkpoint id, got {checkpoint!r}")
    prefix = checkpoint_image("")
    return checkpoint.removeprefix(prefix)


def check_count(n: object) -> int:
    """`n` as a number of forks: a whole number from 1 up, or `BadRequest`."""
    if isinstance(n, bool) or not isinstance(n, int):
        if isinstance(n, float) and math.isfinite(n) and n.is_integer():
            raise BadRequest(f"n must be a whole number (an int), got {n!r}")
        raise BadRequest(f"n must be a whole number of sandboxes from 1 up, got {n!r}")
    if n < 1:
        raise BadRequest(f"n must be at least 1, got {n}")
    if n > MAX_FORKS:
        raise BadRequest(f"n must be at most {MAX_FORKS}, got {n}")
    return n


async def make_checkpoint(
    conn: AgentConnection, sandbox_id: str, *, name: str | None = None, keep: bool = False
) -> Checkpoint:
    """Checkpoint sandbox `sandbox_id` through the connection to its host's agent (see
    `Cluster.checkpoint`; an administrator's tools reach any owner's sandbox this way)."""
    if not isinstance(keep, bool):
        raise BadRequest(f"keep must be True or False, got {keep!r}")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"name must be a string, got {name!r}")
    checkpoint_id = name if name is not None else f"ck-{secrets.token_hex(5)}"
    conn.require(CAPABILITY, "make checkpoints")
    request = CheckpointSandbox(sandbox_id=sandbox_id, checkpoint_id=checkpoint_id, keep=keep)
    reply = await conn.call(request, CheckpointReply)
    return Checkpoint.from_info(reply.checkpoint)


class _Sandboxes(Protocol):
    """What the checkpoint methods use of a `Cluster`."""

    @property
    def state(self) -> ClusterState: ...

    @property
    def hosts(self) -> Mapping[str, Host]: ...

    def connection(self, sandbox_id: str) -> AgentConnection: ...

    async def create_sandbox(self, spec: SandboxSpec) -> SandboxRecord: ...

    async def delete_sandbox(self, sandbox_id: str) -> SandboxRecord: ...


class CheckpointMethods:
    """The checkpoint methods of `Cluster` (see the module's rules)."""

    async def checkpoint(
        self: _Sandboxes, sandbox_id: str, *, name: str | None = None, keep: bool = False
    ) -> Checkpoint:
        """Freeze a running sandbox's file system as a checkpoint on its host."""
        conn = self.connection(sandbox_id)
        made = await make_checkpoint(conn, sandbox_id, name=name, keep=keep)
        copies_of(self.state).held.add((made.host_id, made.checkpoint_id))
        return made

    async def fork(
        self: _Sandboxes, checkpoint: Checkpoint | str, n: int, spec: SandboxSpec | None = None
    ) -> list[SandboxRecord]:
        """Start `n` sandboxes of `spec` (default: the defaults) from `checkpoint`."""
        count = check_count(n)
        checkpoint_id = checkpoint_id_of(checkpoint)
        if not await holders(self.hosts, checkpoint_id):
            raise ImageNotFound(
                f"checkpoint {checkpoint_id!r} is on no connected host (deleted, or its host is"
                " gone)",
                image=checkpoint_image(checkpoint_id),
            )
        base = spec if spec is not None else SandboxSpec(image="")
        forked = msgspec.structs.replace(base, image=checkpoint_image(checkpoint_id))
        records: list[SandboxRecord] = []
        errors: list[RockError] = []

        async def one() -> None:
            try:
                records.append(await self.create_sandbox(forked))
            except RockError as exc:
                errors.append(exc)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(one)
        finally:  # a failed or cancelled fork leaves none of its sandboxes behind
            if errors or len(records) < count:
                with anyio.CancelScope(shield=True):
                    for record in records:
                        try:
                            await self.delete_sandbox(record.sandbox_id)
                        except RockError:
                            pass
        if errors:
            raise errors[0]
        return records

    async def checkpoints(self: _Sandboxes) -> list[CheckpointInfo]:
        """Every checkpoint every connected host holds (one entry per host)."""
        found: list[CheckpointInfo] = []

        async def ask(conn_host: str) -> None:
            conn = connected(self.hosts)[conn_host]
            reply = await conn.call(ListCheckpoints(), CheckpointListReply)
            found.extend(reply.checkpoints)

        async with anyio.create_task_group() as tg:
            for host_id in connected(self.hosts):
                tg.start_soon(ask, host_id)
        return sorted(found, key=lambda i: (i.created, i.checkpoint_id, i.host_id))

    async def delete_checkpoint(
        self: _Sandboxes, checkpoint: Checkpoint | str
    ) -> list[CheckpointInfo]:
        """Remove a checkpoint on every host that holds it; return the copies kept because
        forks still use them (empty when it is gone everywhere)."""
        checkpoint_id = checkpoint_id_of(checkpoint)
        copies_of(self.state).forget(checkpoint_id)
        found = await holders(self.hosts, checkpoint_id)
        if not found:
            raise ImageNotFound(
                f"checkpoint {checkpoint_id!r} is on no connected host",
                image=checkpoint_image(checkpoint_id),
            )
        conns = connected(self.hosts)
        kept: list[CheckpointInfo] = []

        async def remove(host_id: str) -> None:
            request = RemoveCheckpoint(checkpoint_id=checkpoint_id)
            try:
                reply = await conns[host_id].call(request, CheckpointReply)
            except ImageNotFound:
                return
            if reply.checkpoint.containers:
                kept.append(reply.checkpoint)

        async with anyio.create_task_group() as tg:
            for host_id in found:
                tg.start_soon(remove, host_id)
        return kept


__all__ = [
    "MAX_FORKS",
    "Checkpoint",
    "CheckpointMethods",
    "check_count",
    "checkpoint_id_of",
    "make_checkpoint",
]
