"""Uploads and downloads of files and folders, streamed in chunks both ways.

An upload is a tar stream built on the fly from the local files (header, content read in
chunks, padding), so nothing is held whole in memory. A download arrives as a tar stream that is
spooled to a temporary file on disk and then unpacked with tarfile's "data" filter (no links out
of the target, no device files, no absolute paths).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import anyio

from rock_core._connection import AgentConnection, raise_for_reply
from rock_core._errors import BadRequest, FileNotFound, ProtocolError, TransportError
from rock_core._protocol import (
    Download,
    ErrorReply,
    FileStat,
    Reply,
    StreamData,
    TransferReply,
    Upload,
)
from rock_core._tar import END, dir_header, file_header, padding

READ_CHUNK = 1 << 20


async def _tar_stream(local: Path, arcname: str) -> AsyncIterator[bytes]:
    """A tar stream of `local` (file or folder) whose root member is `arcname`."""
    if local.is_dir():
        for root, dirs, files in os.walk(local):
            dirs.sort()
            rel = Path(root).relative_to(local)
            base = str(PurePosixPath(arcname) / rel.as_posix()) if str(rel) != "." else arcname
            yield dir_header(base, mode=Path(root).stat().st_mode & 0o7777)
            for name in sorted(files):
                async for chunk in _file_member(Path(root) / name, f"{base}/{name}"):
                    yield chunk
    else:
        async for chunk in _file_member(local, arcname):
            yield chunk
    yield END


async def _file_member(path: Path, name: str) -> AsyncIterator[bytes]:
    stat = path.stat()
    yield file_header(name, stat.st_size, mode=stat.st_mode & 0o7777, mtime=stat.st_mtime)
    sent = 0
    async with await anyio.open_file(path, "rb") as f:
        while sent < stat.st_size:
            chunk = await f.read(min(READ_CHUNK, stat.st_size - sent))
            if not chunk:
                raise BadRequest(f"{path} shrank while it was being uploaded")
            sent += len(chunk)
            yield chunk
    yield padding(stat.st_size)


async def upload(conn: AgentConnection, sandbox_id: str, local: Path, remote: str) -> FileStat:
    """Copy a local file or folder to `remote` (its full path inside the sandbox)."""
    if not local.exists():
        raise FileNotFound(f"{local}: no such local file or folder")
    if not remote.startswith("/") or remote.rstrip("/") == "":
        raise BadRequest(f"remote path {remote!r} must be absolute and not the root")
    request = Upload(id=conn.next_id(), sandbox_id=sandbox_id, path="/")
    async with conn.open_request(request) as answers:
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                await conn.send_chunks(request.id, _tar_stream(local, remote.strip("/")))

            tg.start_soon(send)
            async for message in answers:
                if isinstance(message, Reply):
                    tg.cancel_scope.cancel()
                    reply = raise_for_reply(message, TransferReply, request)
                    return FileStat(path=remote, size=reply.stat.size, is_dir=local.is_dir())
    raise TransportError("the agent went away during an upload")


async def download(conn: AgentConnection, sandbox_id: str, remote: str, local: Path) -> FileStat:
    """Copy `remote` (file or folder) from the sandbox to `local` (its full local path)."""
    request = Download(id=conn.next_id(), sandbox_id=sandbox_id, path=remote)
    with tempfile.TemporaryFile(prefix="rock-download-") as spool:
        stat: FileStat | None = None
        async with conn.open_request(request) as answers:
            await conn.grant(request.id)
            async for message in answers:
                if isinstance(message, StreamData):
                    if message.data:
                        await anyio.to_thread.run_sync(spool.write, message.data)
                        await conn.grant(request.id, 1)
                elif isinstance(message, ErrorReply | Reply):
                    stat = raise_for_reply(message, TransferReply, request).stat
        if stat is None:
            raise TransportError("the agent went away during a download")
        spool.seek(0)
        await anyio.to_thread.run_sync(_unpack, spool, local, remote)
        return FileStat(path=str(local), size=stat.size, is_dir=local.is_dir())


def _unpack(spool: object, local: Path, remote: str) -> None:
    parent = local if local.is_dir() else local.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rock-download-", dir=parent))
    try:
        with tarfile.open(fileobj=spool, mode="r|") as archive:  # type: ignore[call-overload]
            archive.extractall(staging, filter="data")
        entries = list(staging.iterdir())
        if len(entries) != 1:
            raise ProtocolError(f"download of {remote} did not hold exactly one root entry")
        # Like `cp -r`: into an existing folder, else to the path itself (replacing a file).
        target = local / entries[0].name if local.is_dir() else local
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        shutil.move(str(entries[0]), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["download", "upload"]
