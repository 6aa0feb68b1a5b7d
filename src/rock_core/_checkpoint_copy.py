"""Bringing a checkpoint to the host a create was placed on: streamed from a host that holds
it, through the core, over the connections the cluster already has (no registry).

Rules:
- A create whose image names a checkpoint (`checkpoint_of_image`) first makes sure its host
  holds it (`ensure_checkpoint`, called by `_operations.send_create`); any other image is left
  to the agent (pulled or not by its pull policy). A fork, a pool's fill and a plain create of
  ``rock-checkpoint:<id>`` all go through it.
- A copy is one `ExportCheckpoint` on a host that holds it and one `ImportCheckpoint` on the
  host that lacks it; the core relays the chunks as they arrive, under credit both ways: it
  grants the source a chunk for each chunk the target's credit let it pass on, so at most a
  window of chunks is ever in the core's memory.
- Once per host: concurrent creates of one checkpoint on one host wait for one copy (a lock
  per host and checkpoint), and a host known to hold it is not asked again. The knowledge is
  the cluster's (`Copies`, one per `ClusterState`); `forget` drops it when a checkpoint is
  deleted.
- A host "lacks" a checkpoint when its agent says so, even if it shares an engine with a
  host that holds it (agents keep apart what each host holds: see the agent's
  `_checkpoints`). An agent without the capability "checkpoint" gets no copy.
- No connected host holding it is `ImageNotFound` naming the checkpoint.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Mapping

import anyio

from ._connection import AgentConnection, raise_for_reply, unwrap_single_errors
from ._errors import ImageNotFound, RockError
from ._messages import ErrorReply, Reply, StreamData
from ._messages_checkpoint import (
    CAPABILITY,
    CheckpointInfo,
    CheckpointListReply,
    CheckpointReply,
    ExportCheckpoint,
    ImportCheckpoint,
    ListCheckpoints,
    checkpoint_of_image,
)
from ._records import Host


class Copies:
    """What one cluster knows of where its checkpoints are, and the copies in flight."""

    def __init__(self) -> None:
        self.held: set[tuple[str, str]] = set()  # (host id, checkpoint id)
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    def lock(self, host_id: str, checkpoint_id: str) -> anyio.Lock:
        """The lock one copy of `checkpoint_id` to `host_id` holds."""
        return self._locks.setdefault((host_id, checkpoint_id), anyio.Lock())

    def forget(self, checkpoint_id: str) -> None:
        """Drop what is known of `checkpoint_id` (it was deleted)."""
        self.held = {pair for pair in self.held if pair[1] != checkpoint_id}


_COPIES: weakref.WeakKeyDictionary[object, Copies] = weakref.WeakKeyDictionary()


def copies_of(owner: object) -> Copies:
    """The `Copies` of one cluster (keyed by its state object)."""
    found = _COPIES.get(owner)
    if found is None:
        found = _COPIES[owner] = Copies()
    return found


def connected(hosts: Mapping[str, Host]) -> dict[str, AgentConnection]:
    """The live connections of `hosts` whose agents serve checkpoints, by host id."""
    found: dict[str, AgentConnection] = {}
    for host_id, host in hosts.items():
        conn = host.connection
        if conn is not None and not conn.closed and CAPABILITY in conn.welcome.capabilities:
            found[host_id] = conn
    return found


async def holders(hosts: Mapping[str, Host], checkpoint_id: str) -> dict[str, CheckpointInfo]:
    """The connected hosts that hold `checkpoint_id`, asked all at once (a host that fails to
    answer counts as not holding it)."""
    found: dict[str, CheckpointInfo] = {}

    async def ask(host_id: str, conn: AgentConnection) -> None:
        try:
            reply = await conn.call(
                ListCheckpoints(checkpoint_id=checkpoint_id), CheckpointListReply
            )
        except RockError:  # an unreachable host holds nothing we can use
            return
        if reply.checkpoints:
            found[host_id] = reply.checkpoints[0]

    async with anyio.create_task_group() as tg:
        for host_id, conn in connected(hosts).items():
            tg.start_soon(ask, host_id, conn)
    return found


async def ensure_checkpoint(
    owner: object, hosts: Mapping[str, Host], host_id: str, image: str
) -> None:
    """Make host `host_id` hold the checkpoint `image` names, if it names one (see the rules)."""
    checkpoint_id = checkpoint_of_image(image)
    if checkpoint_id is None:
        return
    conns = connected(hosts)
    if host_id not in conns:
        return  # an agent without checkpoints: its own refusal of the image will say so
    copies = copies_of(owner)
    async with copies.lock(host_id, checkpoint_id):
        if (host_id, checkpoint_id) in copies.held:
            return
        found = await holders(hosts, checkpoint_id)
        if host_id not in found:
            if not found:
                raise ImageNotFound(
                    f"checkpoint {checkpoint_id!r} is on no connected host (deleted, or its"
                    " host is gone)",
                    image=image,
                )
            source = next(iter(found))
            await copy(conns[source], conns[host_id], checkpoint_id)
        copies.held.add((host_id, checkpoint_id))


async def copy(source: AgentConnection, target: AgentConnection, checkpoint_id: str) -> None:
    """Stream checkpoint `checkpoint_id` from `source`'s host to `target`'s (see the rules)."""
    export = ExportCheckpoint(checkpoint_id=checkpoint_id)
    load = ImportCheckpoint(checkpoint_id=checkpoint_id)
    async with source.open_request(export) as outgoing:
        await source.grant(export.id)

        async def relayed() -> AsyncIterator[bytes]:
            async for message in outgoing:
                if isinstance(message, StreamData):
                    if message.end:
                        return
                    if message.data:
                        yield message.data
                        await source.grant(export.id, 1)
                elif isinstance(message, ErrorReply | Reply):
                    raise_for_reply(message, CheckpointReply, export)
                    return
            raise ImageNotFound(f"the agent exporting checkpoint {checkpoint_id!r} went away")

        with unwrap_single_errors():  # a failure of either side comes out as itself
            async with target.open_request(load) as incoming, anyio.create_task_group() as tg:
                tg.start_soon(target.send_chunks, load.id, relayed())
                async for message in incoming:
                    if isinstance(message, ErrorReply | Reply):
                        tg.cancel_scope.cancel()
                        raise_for_reply(message, CheckpointReply, load)
                        break
        async for message in outgoing:  # the export's own reply, after its end marker
            if isinstance(message, ErrorReply | Reply):
                raise_for_reply(message, CheckpointReply, export)
                break


__all__ = ["Copies", "connected", "copies_of", "copy", "ensure_checkpoint", "holders"]
