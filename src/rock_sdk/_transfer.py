"""Uploads and downloads of files and folders, streamed in chunks both ways.

An upload is a tar stream built on the fly from the local files (`_local`: walked first, then
read in chunks), so nothing is held whole in memory. A download arrives as a tar stream that
is spooled to a temporary file on disk and then unpacked (`_unpack`: like `docker cp`, never
writing outside the target).

Rules:
- Arguments are checked first: a wrong type is a `BadRequest` naming the argument.
- Errors are ours only: local `OSError`s are mapped in `_local` (`FileNotFound` for a missing
  local path, else `BadRequest`), a broken link is a `TransportError`. The sender and the reply
  reader run as two tasks; a failure both of them see (the agent died) is raised once, alone,
  never as an exception group, and with the reader's words for it.
- The upload's sender never runs ahead of the agent's credit (`send_chunks` takes one credit
  per chunk), and its file handles are closed on every exit (`aclosing`).
- Both directions report what they left out in `FileStat.skipped`: special files (FIFOs,
  sockets, devices) are never opened or made, on either side.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio

from rock_core import AgentConnection, BadRequest, RockError, TransportError
from rock_core.protocol import (
    Download,
    ErrorReply,
    FileStat,
    Reply,
    StreamData,
    TransferReply,
    Upload,
    raise_for_reply,
)

from ._local import local_error, tar_stream, walk
from ._unpack import unpack

LINK_GRACE = 10.0  # seconds the reply reader has to notice a link the sender found broken


async def upload(conn: AgentConnection, sandbox_id: str, local: object, remote: object) -> FileStat:
    """Copy a local file or folder to `remote` (its full path inside the sandbox)."""
    source = _local_path("upload", local)
    target = _remote_path("upload", remote)
    tree = await anyio.to_thread.run_sync(walk, source, target.lstrip("/"), abandon_on_cancel=True)
    request = Upload(sandbox_id=sandbox_id, path="/")
    with _one_error():
        async with conn.open_request(request) as answers, anyio.create_task_group() as tg:

            async def send() -> None:
                try:
                    async with contextlib.aclosing(tar_stream(tree)) as chunks:
                        await conn.send_chunks(request.id, chunks)
                except TransportError:
                    # A broken link ends the replies too, with the link's own reason: let the
                    # reader report it (it cancels this task), unless it never notices.
                    with anyio.move_on_after(LINK_GRACE):
                        await conn.wait_closed()
                        await anyio.sleep_forever()
                    raise

            tg.start_soon(send)
            async for message in answers:
                if isinstance(message, Reply):
                    tg.cancel_scope.cancel()
                    reply = raise_for_reply(message, TransferReply, request)
                    return FileStat(
                        path=target, size=reply.stat.size, is_dir=tree.is_dir, skipped=tree.skipped
                    )
    raise TransportError("the agent went away during an upload")


async def download(
    conn: AgentConnection, sandbox_id: str, remote: object, local: object
) -> FileStat:
    """Copy `remote` (file or folder) from the sandbox to `local` (its full local path)."""
    source = _remote_path("download", remote)
    target = Path(_local_path("download", local))
    request = Download(sandbox_id=sandbox_id, path=source)
    try:
        spool = tempfile.TemporaryFile(prefix="rock-download-")
    except OSError as exc:
        raise local_error(exc, tempfile.gettempdir(), "write") from exc
    with spool:
        stat: FileStat | None = None
        async with conn.open_request(request) as answers:
            await conn.grant(request.id)
            async for message in answers:
                if isinstance(message, StreamData):
                    if message.data:
                        try:
                            await anyio.to_thread.run_sync(spool.write, message.data)
                        except OSError as exc:
                            raise local_error(exc, tempfile.gettempdir(), "write") from exc
                        await conn.grant(request.id, 1)
                elif isinstance(message, ErrorReply | Reply):
                    stat = raise_for_reply(message, TransferReply, request).stat
        if stat is None:
            raise TransportError("the agent went away during a download")
        spool.seek(0)
        unpacked = await anyio.to_thread.run_sync(
            unpack, spool, target, source, anyio.from_thread.check_cancelled
        )
    return FileStat(
        path=str(target),
        size=stat.size,
        is_dir=unpacked.is_dir,
        skipped=[*stat.skipped, *unpacked.skipped],
    )


def _local_path(op: str, value: object) -> str:
    """`value` as a local path, or `BadRequest` naming the argument."""
    path = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(path, str):
        raise BadRequest(
            f"{op}: local must be a local path (str or os.PathLike), not {type(value).__name__}"
        )
    if not path or "\0" in path:
        raise BadRequest(f"{op}: local {path!r} is not a path")
    return path


def _remote_path(op: str, value: object) -> str:
    """`value` as an absolute path in the sandbox, normalised, or `BadRequest`."""
    if not isinstance(value, str):
        raise BadRequest(
            f"{op}: remote must be a str (an absolute path in the sandbox), "
            f"not {type(value).__name__}"
        )
    if not value.startswith("/") or "\0" in value:
        raise BadRequest(f"{op}: remote {value!r} must be an absolute path in the sandbox")
    path = "/" + posixpath.normpath(value).lstrip("/")
    if path == "/":
        raise BadRequest(f"{op}: remote {value!r} must name a file or folder, not the root")
    return path


@contextlib.contextmanager
def _one_error() -> Iterator[None]:
    """One failure, raised alone: the sender and the reply reader may both see a dead agent."""
    try:
        yield
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        if all(isinstance(error, RockError) for error in errors):
            raise errors[0] from errors[0].__cause__
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found


__all__ = ["download", "upload"]
