"""Checkpoints on this host: a sandbox's file system committed as an image labelled as ours,
listed, removed, exported to the core and imported from it, and reaped with their owner.

Rules:
- A checkpoint is the image ``rock-checkpoint:<id>`` (`checkpoint_image`), committed with the
  engine's pause (the sandbox is frozen only while the engine copies its changes). Its labels
  (outside the ``rock.`` namespace, which every commit blanks) name the checkpoint, the source
  sandbox, the host it was made on, its owner (the source sandbox's owner, as
  ``rock-kit.committer``) and whether it is kept.
- Only a running sandbox is checkpointed (a stopped one is a `BadRequest` naming its state);
  an id that exists on the engine is `AlreadyExists`.
- This host holds a checkpoint when it made it (its origin label) or imported it (the record
  `HOLDINGS_FILE` in the agent's state folder, by host id): agents sharing an engine under
  different host ids see only their own, so the core streams a checkpoint to each of them,
  as it would to a host with an engine of its own. A missing one is `ImageNotFound`.
- Checkpoints are a user's, as committed images are: a connection sees and removes those of
  its own user (root's administrator: all). An import loads an archive only as the one image
  ``rock-checkpoint:<id>`` (any other tag in it is refused before the engine sees it), never
  over another user's checkpoint, and keeps it only if it is a checkpoint of the importer's.
- Removal never forces: on a host where forks still use the image it stays, reported with
  their count (`containers`), until a later removal or its owner's reaping finds it unused.
- An owner's checkpoints go when its sandboxes are reaped (`reap_owner`: owner gone, lease
  ended), unless made with ``keep``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio

from rock_core import AlreadyExists, BadRequest, ImageNotFound, RockError, SandboxFailed
from rock_core.protocol import (
    CheckpointInfo,
    CheckpointListReply,
    CheckpointReply,
    CheckpointSandbox,
    ExportCheckpoint,
    ImportCheckpoint,
    ListCheckpoints,
    RemoveCheckpoint,
    Reply,
    StreamCredit,
    checkpoint_image,
)
from rock_core.serving import WINDOW, Connection, Principal, send_stream

from . import _state_file
from ._files import until_end
from ._image_usage import state_dir
from ._images import LABEL_COMMITTER
from ._labels import owner_key
from ._runtime import ContainerRuntime, ImageRecord

log = logging.getLogger("rock_agent.checkpoints")

LABEL_CHECKPOINT = "rock-kit.checkpoint"
LABEL_SOURCE = "rock-kit.checkpoint.source"
LABEL_ORIGIN = "rock-kit.checkpoint.origin"
LABEL_KEEP = "rock-kit.checkpoint.keep"
HOLDINGS_FILE = "checkpoints.json"
_PREFIX = checkpoint_image("")


class _Server(Protocol):
    host_id: str
    runtime: ContainerRuntime


# ---------------------------------------------------------------------------- the record


def _read_holdings() -> dict[str, list[str]]:
    try:
        data = json.loads((state_dir() / HOLDINGS_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


async def _hold(host_id: str, checkpoint_id: str, held: bool) -> None:
    """Record that this host holds (or no longer holds) a checkpoint."""

    def content() -> bytes:
        data = _read_holdings()
        ids = set(data.get(host_id, []))
        (ids.add if held else ids.discard)(checkpoint_id)
        data[host_id] = sorted(ids)
        return json.dumps(data).encode()

    try:
        await anyio.to_thread.run_sync(_state_file.rewrite, state_dir() / HOLDINGS_FILE, content)
    except OSError as exc:
        log.warning("cannot record checkpoint %s: %s", checkpoint_id, exc)


# ---------------------------------------------------------------------------- reading


def _info(host_id: str, image: ImageRecord, containers: int) -> CheckpointInfo:
    labels = image.labels
    checkpoint_id = labels.get(LABEL_CHECKPOINT, "")
    return CheckpointInfo(
        checkpoint_id=checkpoint_id,
        image=checkpoint_image(checkpoint_id),
        image_id=image.image_id,
        host_id=host_id,
        source=labels.get(LABEL_SOURCE, ""),
        origin=labels.get(LABEL_ORIGIN, ""),
        owner=labels.get(LABEL_COMMITTER, ""),
        kept=labels.get(LABEL_KEEP) == "1",
        size=image.size,
        created=image.created,
        containers=containers,
    )


def _uid_of(info: CheckpointInfo) -> int | None:
    uid, _, _ = info.owner.partition(":")
    return int(uid) if uid.isdigit() else None


def _visible(who: Principal, info: CheckpointInfo) -> bool:
    return (who.uid == 0 and who.admin) or _uid_of(info) == who.uid


async def held(server: _Server, only: str | None = None) -> list[CheckpointInfo]:
    """The checkpoints this host holds (see the rules), with their containers counted."""
    tags = [t for t in await server.runtime.local_images() if t.startswith(_PREFIX)]
    wanted = [t for t in tags if only is None or t == checkpoint_image(only)]
    if not wanted:
        return []
    mine = set(_read_holdings().get(server.host_id, []))
    users: dict[str, int] = {}
    for container in await server.runtime.all_containers():
        users[container.image_id] = users.get(container.image_id, 0) + 1
    found: list[CheckpointInfo] = []
    for tag in wanted:
        try:
            image = await server.runtime.inspect_image(tag)
        except ImageNotFound:
            continue  # removed meanwhile
        info = _info(server.host_id, image, users.get(image.image_id, 0))
        if info.checkpoint_id and (info.origin == server.host_id or info.checkpoint_id in mine):
            found.append(info)
    return sorted(found, key=lambda i: (i.created, i.checkpoint_id))


async def _one(server: _Server, who: Principal, checkpoint_id: str) -> CheckpointInfo:
    for info in await held(server, checkpoint_id):
        if _visible(who, info):
            return info
    raise ImageNotFound(
        f"no checkpoint {checkpoint_id!r} on host {server.host_id}",
        image=checkpoint_image(checkpoint_id),
    )


# ---------------------------------------------------------------------------- handlers


async def checkpoint_sandbox(server: _Server, conn: Connection, req: CheckpointSandbox) -> Reply:
    """Handler of `CheckpointSandbox`."""
    sandbox = await server.runtime.inspect(req.sandbox_id)
    if sandbox.state not in ("running", "paused"):
        raise BadRequest(
            f"sandbox {req.sandbox_id} is not running ({sandbox.state}): only a running"
            " sandbox can be checkpointed; start it first",
            sandbox_id=req.sandbox_id,
        )
    reference = checkpoint_image(req.checkpoint_id)
    try:
        await server.runtime.inspect_image(reference)
    except ImageNotFound:
        pass
    else:
        raise AlreadyExists(f"checkpoint {req.checkpoint_id!r} already exists: choose another name")
    labels = {
        LABEL_COMMITTER: owner_key(sandbox.owner_uid, sandbox.owner),
        LABEL_CHECKPOINT: req.checkpoint_id,
        LABEL_SOURCE: req.sandbox_id,
        LABEL_ORIGIN: server.host_id,
    }
    if req.keep:
        labels[LABEL_KEEP] = "1"
    repository, _, tag = reference.partition(":")
    await server.runtime.commit(
        req.sandbox_id,
        repository=repository,
        tag=tag,
        message=f"checkpoint of sandbox {req.sandbox_id}",
        changes=[],
        labels=labels,
        pause=True,
    )
    return CheckpointReply(id=req.id, checkpoint=await _one(server, conn.principal, tag))


async def list_checkpoints(server: _Server, conn: Connection, req: ListCheckpoints) -> Reply:
    """Handler of `ListCheckpoints`."""
    found = [i for i in await held(server, req.checkpoint_id) if _visible(conn.principal, i)]
    return CheckpointListReply(id=req.id, checkpoints=found)


async def remove_checkpoint(server: _Server, conn: Connection, req: RemoveCheckpoint) -> Reply:
    """Handler of `RemoveCheckpoint`."""
    info = await _one(server, conn.principal, req.checkpoint_id)
    return CheckpointReply(id=req.id, checkpoint=await _remove(server, info))


async def _remove(server: _Server, info: CheckpointInfo) -> CheckpointInfo:
    """Remove a checkpoint's image unless containers use it; the checkpoint as it is after."""
    if info.containers == 0:
        try:
            await server.runtime.remove_image(info.image)
        except ImageNotFound:
            pass
        except SandboxFailed as exc:  # a fork started meanwhile: it stays
            log.info("checkpoint %s kept: %s", info.checkpoint_id, exc)
            return info
        await _hold(server.host_id, info.checkpoint_id, False)
    return info


async def export_checkpoint(server: _Server, conn: Connection, req: ExportCheckpoint) -> Reply:
    """Handler of `ExportCheckpoint`: the image's archive under the caller's credit."""
    info = await _one(server, conn.principal, req.checkpoint_id)
    archive = server.runtime.export_image(info.image)
    try:
        await send_stream(conn.send, conn.gate(req.id), req.id, archive)
    finally:
        await archive.aclose()
    return CheckpointReply(id=req.id, checkpoint=info)


async def import_checkpoint(server: _Server, conn: Connection, req: ImportCheckpoint) -> Reply:
    """Handler of `ImportCheckpoint`: load the archive the caller streams under credit."""
    receive = conn.open_inbound(req.id, WINDOW * 2)

    async def archive() -> AsyncIterator[bytes]:
        await conn.send(StreamCredit(id=req.id, chunks=WINDOW))
        async for chunk in until_end(receive):
            yield chunk
            await conn.send(StreamCredit(id=req.id, chunks=1))

    reference = checkpoint_image(req.checkpoint_id)
    with contextlib.suppress(ImageNotFound):  # another user's checkpoint is never replaced
        there = _info(server.host_id, await server.runtime.inspect_image(reference), 0)
        if not _visible(conn.principal, there):
            raise BadRequest(f"checkpoint id {req.checkpoint_id!r} is taken on this host")
    await server.runtime.load_image(archive(), only=reference)
    try:
        image = await server.runtime.inspect_image(reference)
    except ImageNotFound:
        image = None
    if image is None or image.labels.get(LABEL_CHECKPOINT) != req.checkpoint_id:
        raise BadRequest(f"the archive streamed holds no checkpoint {req.checkpoint_id!r}")
    if not _visible(conn.principal, _info(server.host_id, image, 0)):
        with contextlib.suppress(RockError):
            await server.runtime.remove_image(reference)
        raise BadRequest(f"the archive streamed is not a checkpoint of {conn.principal.owner}")
    await _hold(server.host_id, req.checkpoint_id, True)
    info = await _one(server, conn.principal, req.checkpoint_id)
    return CheckpointReply(id=req.id, checkpoint=info)


HANDLERS: dict[type[Any], Callable[[Any, Connection, Any], Awaitable[Reply]]] = {
    CheckpointSandbox: checkpoint_sandbox,
    ListCheckpoints: list_checkpoints,
    RemoveCheckpoint: remove_checkpoint,
    ExportCheckpoint: export_checkpoint,
    ImportCheckpoint: import_checkpoint,
}
"""The agent's handlers of the checkpoint requests (joined into `_routes.HANDLERS`)."""

# ---------------------------------------------------------------------------- reaping


async def reap_owner(server: _Server, key: str) -> None:
    """Remove the checkpoints of owner `key` (not kept) that no container uses any more."""
    await reap_where(server, lambda owner: owner == key)


async def reap_where(server: _Server, gone: Callable[[str], bool]) -> None:
    """Remove the checkpoints (not kept) whose owner key `gone` says has gone."""
    try:
        found = await held(server)
    except RockError as exc:
        log.warning("cannot list checkpoints to reap them: %s", exc)
        return
    for info in found:
        if not info.kept and info.owner and gone(info.owner):
            try:
                await _remove(server, info)
            except RockError as exc:
                log.warning("cannot reap checkpoint %s: %s", info.checkpoint_id, exc)


__all__ = [
    "HANDLERS",
    "HOLDINGS_FILE",
    "LABEL_CHECKPOINT",
    "checkpoint_sandbox",
    "export_checkpoint",
    "held",
    "import_checkpoint",
    "list_checkpoints",
    "reap_owner",
    "reap_where",
    "remove_checkpoint",
]
