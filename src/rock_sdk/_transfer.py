"""Uploads and downloads of files and folders, streamed in chunks both ways.

An upload is a tar stream built on the fly from the local files (`_local`: walked first, then
read in chunks), so nothing is held whole in memory. A download arrives as a tar stream that
is unpacked as it arrives, in a worker thread (`_unpack`: like `docker cp`, never writing
outside the target; `_feed` hands it the chunks, and grants the agent one more chunk of credit
for each it takes, so at most the credit window is held).

Rules:
- Arguments are checked first: a wrong type is a `BadRequest` naming the argument.
- Errors are ours only: local `OSError`s are mapped in `_local` (`FileNotFound` for a missing
  local path, else `BadRequest`), a broken link is a `TransportError`. An upload is a
  `_streamed` call: its sender keeps to the agent's credit, its file handles are closed on
  every exit, and a failure its sender and its reply reader both see is raised once, alone.
- Both directions report what they left out in `FileStat.skipped`: special files (FIFOs,
  sockets, devices) are never opened or made, on either side.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import anyio

from rock_core import (
    AgentConnection,
    BadRequest,
    ProgressCallback,
    ProgressReporter,
    RockError,
    TransportError,
    check_progress,
)
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

from ._feed import ChunkFeed
from ._local import tar_stream, walk
from ._streamed import call_streamed, one_error
from ._tar_read import READ_SIZE
from ._unpack import Unpacked, unpack

Local = str | os.PathLike[str]
"""A local path, as `upload` and `download` take it."""
OnProgress = ProgressCallback | None
"""A `progress=` argument: None, or a callable taking a `rock_sdk.Progress`."""


async def upload(
    conn: AgentConnection,
    sandbox_id: str,
    local: object,
    remote: object,
    progress: OnProgress = None,
) -> FileStat:
    """Copy a local file or folder to `remote` (its full path inside the sandbox).
    `progress(Progress)` counts the bytes of file content sent, of the files' total size."""
    source = _local_path("upload", local)
    target = _remote_path("upload", remote)
    check_progress(progress)
    tree = await anyio.to_thread.run_sync(walk, source, target.lstrip("/"), abandon_on_cancel=True)
    size = sum(entry.size for entry in tree.entries)
    reporter = ProgressReporter(progress, "upload", "bytes", size)
    reporter.start()
    request = Upload(sandbox_id=sandbox_id, path="/")
    reply = await call_streamed(
        conn, request, lambda: tar_stream(tree, reporter.advance), TransferReply, "an upload"
    )
    reporter.finish()
    return FileStat(path=target, size=reply.stat.size, is_dir=tree.is_dir, skipped=tree.skipped)


async def download(
    conn: AgentConnection,
    sandbox_id: str,
    remote: object,
    local: object,
    progress: OnProgress = None,
) -> FileStat:
    """Copy `remote` (file or folder) from the sandbox to `local` (its full local path).
    `progress(Progress)` counts the bytes received (the archive the agent sends); their
    total is known only at the end."""
    source = _remote_path("download", remote)
    target = Path(_local_path("download", local))
    reporter = ProgressReporter(check_progress(progress), "download", "bytes")
    request = Download(sandbox_id=sandbox_id, path=source)
    stat: FileStat | None = None
    unpacked: list[Unpacked] = []
    with one_error():
        async with conn.open_request(request) as answers, anyio.create_task_group() as tg:
            feed = ChunkFeed(lambda: conn.grant(request.id, 1))
            try:
                await conn.grant(request.id)
                async for message in answers:
                    if isinstance(message, StreamData):
                        if not feed.started:  # nothing is changed here before data comes
                            feed.started = True
                            tg.start_soon(_unpack_feed, feed, target, source, unpacked)
                        await feed.put(message.data, message.end)
                        reporter.advance(len(message.data))
                    elif isinstance(message, ErrorReply | Reply):
                        stat = raise_for_reply(message, TransferReply, request).stat
                if stat is None:
                    raise TransportError("the agent went away during a download")
                feed.close()
                if not feed.started:  # no data at all: the unpacker says what is wrong
                    tg.start_soon(_unpack_feed, feed, target, source, unpacked)
            except BaseException:
                feed.abort()
                raise
    reporter.finish()
    assert stat is not None
    return FileStat(
        path=str(target),
        size=stat.size,
        is_dir=unpacked[0].is_dir,
        skipped=[*stat.skipped, *unpacked[0].skipped],
    )


async def _unpack_feed(feed: ChunkFeed, target: Path, source: str, out: list[Unpacked]) -> None:
    """Unpack what `feed` gives, in a worker thread; quiet if the download failed first."""
    try:
        out.append(await anyio.to_thread.run_sync(_unpack_all, feed, target, source))
    except RockError:
        if not feed.aborted:
            raise  # else the download's own error is the one raised


def _unpack_all(feed: ChunkFeed, target: Path, source: str) -> Unpacked:
    unpacked = unpack(feed, target, source, anyio.from_thread.check_cancelled)
    while feed.read(READ_SIZE):  # bytes past the archive's end: taken, so the agent can finish
        pass
    return unpacked


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


__all__ = ["Local", "OnProgress", "download", "upload"]
