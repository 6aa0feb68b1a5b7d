"""The fake agent's checkpoints (`FakeAgent` serves them with these): records in memory, copied
between fake agents as a byte stream, as the real agent copies an image.

Rules (those of `_messages_checkpoint` and the real agent's `_checkpoints`):
- A checkpoint of a running (or paused) sandbox is a `CheckpointInfo` kept in
  `agent.checkpoints`; one of a sandbox that does not run is a `BadRequest` naming its state,
  an id already there `AlreadyExists`, one the agent does not hold `ImageNotFound`.
- An export streams the record (msgpack) under the caller's credit, in small chunks; an
  import reads such a stream under the agent's credit and holds the record.
- A create whose image is a checkpoint this agent does not hold fails with `ImageNotFound`,
  as the real engine's pull of a checkpoint's name would (`creating`).
- The fake agent has no files: a fork starts as any fake sandbox does. Removal and reaping
  are immediate (no engine refuses an image in use).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from ._channel import WINDOW, send_stream
from ._endpoint import Connection
from ._errors import AlreadyExists, BadRequest, ImageNotFound, TransportError
from ._messages import CreateSandbox, Reply, StreamCredit
from ._messages_checkpoint import (
    CheckpointInfo,
    CheckpointListReply,
    CheckpointReply,
    CheckpointSandbox,
    ExportCheckpoint,
    ImportCheckpoint,
    ListCheckpoints,
    RemoveCheckpoint,
    checkpoint_image,
    checkpoint_of_image,
)

PIECE = 64  # bytes per chunk of an export: a record takes several, as an image would
Handler = Callable[[Any, Connection, Any], Awaitable[Reply]]


def _held(agent: Any, checkpoint_id: str) -> CheckpointInfo:
    found: CheckpointInfo | None = agent.checkpoints.get(checkpoint_id)
    if found is None:
        raise ImageNotFound(
            f"no checkpoint {checkpoint_id!r} on host {agent.host_id}",
            image=checkpoint_image(checkpoint_id),
        )
    return found


def _users(agent: Any, checkpoint_id: str) -> int:
    image = checkpoint_image(checkpoint_id)
    return sum(1 for s in agent.sandboxes.values() if s.spec.image == image)


async def checkpoint(agent: Any, conn: Connection, request: CheckpointSandbox) -> Reply:
    """Handler of `CheckpointSandbox`."""
    sandbox = agent._sandbox(request.sandbox_id, conn.principal)
    if sandbox.info.state not in ("running", "paused"):
        raise BadRequest(
            f"sandbox {request.sandbox_id} is not running ({sandbox.info.state}): only a running"
            " sandbox can be checkpointed; start it first",
            sandbox_id=request.sandbox_id,
        )
    if request.checkpoint_id in agent.checkpoints:
        raise AlreadyExists(
            f"checkpoint {request.checkpoint_id!r} already exists: choose another name"
        )
    info = CheckpointInfo(
        checkpoint_id=request.checkpoint_id,
        image=checkpoint_image(request.checkpoint_id),
        image_id="sha256:" + request.checkpoint_id,
        host_id=agent.host_id,
        source=request.sandbox_id,
        origin=agent.host_id,
        owner=sandbox.principal.key,
        kept=request.keep,
        created=time.time(),
    )
    agent.checkpoints[request.checkpoint_id] = info
    return CheckpointReply(id=request.id, checkpoint=info)


async def list_checkpoints(agent: Any, conn: Connection, request: ListCheckpoints) -> Reply:
    """Handler of `ListCheckpoints`."""
    found = [
        msgspec.structs.replace(info, containers=_users(agent, info.checkpoint_id))
        for info in agent.checkpoints.values()
        if request.checkpoint_id in (None, info.checkpoint_id)
    ]
    return CheckpointListReply(id=request.id, checkpoints=found)


async def remove(agent: Any, conn: Connection, request: RemoveCheckpoint) -> Reply:
    """Handler of `RemoveCheckpoint`."""
    info = _held(agent, request.checkpoint_id)
    del agent.checkpoints[request.checkpoint_id]
    return CheckpointReply(id=request.id, checkpoint=info)


async def export(agent: Any, conn: Connection, request: ExportCheckpoint) -> Reply:
    """Handler of `ExportCheckpoint`: the record as a stream under the caller's credit."""
    info = _held(agent, request.checkpoint_id)
    data = msgspec.msgpack.encode(info)

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(data), PIECE):
            yield data[at : at + PIECE]

    await send_stream(conn.send, conn.gate(request.id), request.id, pieces())
    return CheckpointReply(id=request.id, checkpoint=info)


async def import_(agent: Any, conn: Connection, request: ImportCheckpoint) -> Reply:
    """Handler of `ImportCheckpoint`: hold the record the caller streams."""
    receive = conn.open_inbound(request.id, WINDOW * 2)
    await conn.send(StreamCredit(id=request.id, chunks=WINDOW))
    data = bytearray()
    async for chunk in receive:
        if chunk is None:
            break
        data += chunk
        await conn.send(StreamCredit(id=request.id, chunks=1))
    else:
        raise TransportError("the import stream ended before its end marker")
    try:
        info = msgspec.msgpack.decode(bytes(data), type=CheckpointInfo)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the archive streamed is no checkpoint: {exc}") from exc
    if info.checkpoint_id != request.checkpoint_id:
        raise BadRequest(f"the archive streamed holds no checkpoint {request.checkpoint_id!r}")
    info = msgspec.structs.replace(info, host_id=agent.host_id)
    agent.checkpoints[info.checkpoint_id] = info
    return CheckpointReply(id=request.id, checkpoint=info)


def creating(create: Handler) -> Handler:
    """`create`, refusing a checkpoint's image this agent does not hold."""

    async def handler(agent: Any, conn: Connection, request: CreateSandbox) -> Reply:
        checkpoint_id = checkpoint_of_image(request.spec.image)
        if checkpoint_id is not None:
            _held(agent, checkpoint_id)
        return await create(agent, conn, request)

    return handler


def reap(agent: Any, owner_key: str) -> None:
    """Forget the checkpoints (not kept) of an owner whose sandboxes went."""
    for checkpoint_id, info in list(agent.checkpoints.items()):
        if info.owner == owner_key and not info.kept:
            del agent.checkpoints[checkpoint_id]


HANDLERS: dict[type[Any], Handler] = {
    CheckpointSandbox: checkpoint,
    ListCheckpoints: list_checkpoints,
    RemoveCheckpoint: remove,
    ExportCheckpoint: export,
    ImportCheckpoint: import_,
}

__all__ = ["HANDLERS", "creating", "reap"]
