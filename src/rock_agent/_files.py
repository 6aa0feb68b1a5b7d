"""Files in a sandbox: read and write whole files, upload and download tar streams.

Rules:
- Paths are absolute (the schema refuses others). Everything goes through the engine's archive
  API: no process runs in the sandbox, so this works in any image, busybox or distroless.
- Every archive stream the agent opens is closed on every exit, errors and cancellation
  included: an abandoned archive response would keep the engine's tar process, and with it
  the container, busy.
- Uploads arrive as `StreamData` under credit (`Connection.open_inbound`); downloads leave
  under the caller's credit (`send_stream`), so neither side holds a whole file in memory.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import AsyncIterator
from typing import IO, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from rock_core._channel import WINDOW, send_stream
from rock_core._endpoint import Connection
from rock_core._errors import BadRequest, FileNotFound, TransportError
from rock_core._protocol import (
    Done,
    Download,
    FileReply,
    FileStat,
    ReadFile,
    Reply,
    StreamCredit,
    TransferReply,
    Upload,
    WriteFile,
)
from rock_core._tar import END, file_header, padding, single_file

from ._docker import DockerRuntime

READ_FILE_LIMIT = 64 << 20


class _Server(Protocol):
    runtime: DockerRuntime


async def read_file(server: _Server, conn: Connection, req: ReadFile) -> Reply:
    """Handler of `ReadFile`: a whole file of at most `READ_FILE_LIMIT` bytes."""
    data = bytearray()
    archive = server.runtime.get_archive(req.sandbox_id, req.path)
    async with contextlib.aclosing(archive) as tar:
        async for chunk in tar:
            data += chunk
            if len(data) > READ_FILE_LIMIT + (64 << 10):
                raise BadRequest(
                    f"{req.path} is larger than {READ_FILE_LIMIT >> 20} MiB; use download()"
                )
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive_file:
        member = archive_file.next()
        if member is None:
            raise FileNotFound(f"{req.path}: nothing there in sandbox {req.sandbox_id}")
        if member.isdir():
            raise BadRequest(f"{req.path} is a folder; use download() for folders")
        if member.issym() or member.islnk():
            raise BadRequest(f"{req.path} is a link to {member.linkname}; read the target")
        extracted = archive_file.extractfile(member)
        content = extracted.read() if extracted is not None else b""
    return FileReply(id=req.id, data=content)


async def write_file(server: _Server, conn: Connection, req: WriteFile) -> Reply:
    """Handler of `WriteFile`: one file, parents created."""
    if req.path.endswith("/"):
        raise BadRequest(f"{req.path} names a folder, not a file")

    async def body() -> AsyncIterator[bytes]:
        yield single_file(req.path, req.data, mode=req.mode)

    await server.runtime.put_archive(req.sandbox_id, "/", body())
    return Done(id=req.id)


async def upload(server: _Server, conn: Connection, req: Upload) -> Reply:
    """Handler of `Upload`: unpack the tar stream the client sends at `path`."""
    receive = conn.open_inbound(req.id, WINDOW * 2)
    received = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal received
        await conn.send(StreamCredit(id=req.id, chunks=WINDOW))
        async for chunk in until_end(receive):
            received += len(chunk)
            yield chunk
            await conn.send(StreamCredit(id=req.id, chunks=1))

    await server.runtime.put_archive(req.sandbox_id, req.path, chunks())
    return TransferReply(id=req.id, stat=FileStat(path=req.path, size=received))


async def download(server: _Server, conn: Connection, req: Download) -> Reply:
    """Handler of `Download`: send `path` as a tar stream under the client's credit."""
    archive = server.runtime.get_archive(req.sandbox_id, req.path)
    async with contextlib.aclosing(archive) as tar:
        sent = await send_stream(conn.send, conn.gate(req.id), req.id, tar)
    return TransferReply(id=req.id, stat=FileStat(path=req.path, size=sent))


async def until_end(receive: MemoryObjectReceiveStream[bytes | None]) -> AsyncIterator[bytes]:
    """The chunks of an inbound stream up to its end marker."""
    async for chunk in receive:
        if chunk is None:
            return
        yield chunk
    raise TransportError("the upload stream ended before its end marker")


async def file_tar(path: str, data: IO[bytes], size: int) -> AsyncIterator[bytes]:
    """A tar stream holding one file of `size` bytes read from `data`."""
    yield file_header(path, size)
    while chunk := await anyio.to_thread.run_sync(data.read, 1 << 20):
        yield chunk
    yield padding(size) + END


__all__ = ["download", "file_tar", "read_file", "until_end", "upload", "write_file"]
