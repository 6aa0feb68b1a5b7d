"""Files in a sandbox: read and write whole files, upload and download tar streams.

Rules:
- Paths are absolute (the schema refuses others). Everything goes through the engine's archive
  API: no process runs in the sandbox, so this works in any image, busybox or distroless.
- Every archive stream the agent opens is closed on every exit, errors and cancellation
  included: an abandoned archive response would keep the engine's tar process, and with it
  the container, busy.
- Uploads arrive as `StreamData` under credit (`Connection.open_inbound`); downloads leave
  under the caller's credit (`send_stream`), so neither side holds a whole file in memory.
- Nothing under /proc, /sys or /dev is read or written: the archive API works on the
  container's layers, so it would read the image's copy and write where no process looks.
  Every path is checked, an upload's members too (their headers are read as they pass).
"""

from __future__ import annotations

import contextlib
import io
import posixpath
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
from rock_core._schema import MAX_DATA
from rock_core._tar import END, Member, TarScanner, file_header, kind, padding, single_file

from ._runtime import ContainerRuntime

READ_FILE_LIMIT = MAX_DATA  # its reply must fit one frame
KERNEL_DIRS = ("/proc", "/sys", "/dev")


class _Server(Protocol):
    runtime: ContainerRuntime


async def read_file(server: _Server, conn: Connection, req: ReadFile) -> Reply:
    """Handler of `ReadFile`: a whole file of at most `READ_FILE_LIMIT` bytes."""
    refuse_kernel_path(req.path)
    data = bytearray()
    scanner = TarScanner()
    checked = False
    archive = server.runtime.get_archive(req.sandbox_id, req.path)
    async with contextlib.aclosing(archive) as tar:
        async for chunk in tar:
            data += chunk
            if not checked and (members := scanner.feed(chunk)):
                _check_readable(req, members[0])  # refused before its content is read
                checked = True
            if len(data) > READ_FILE_LIMIT + (64 << 10):
                raise BadRequest(_too_large(req.path))
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive_file:
        member = archive_file.next()
        if member is None:
            raise FileNotFound(f"{req.path}: nothing there in sandbox {req.sandbox_id}")
        extracted = archive_file.extractfile(member)
        content = extracted.read() if extracted is not None else b""
    return FileReply(id=req.id, data=content)


def _check_readable(req: ReadFile, member: Member) -> None:
    if member.is_dir:
        raise BadRequest(f"{req.path} is a folder; use download() for folders")
    if member.is_link:
        raise BadRequest(f"{req.path} is a link to {member.linkname}; read the target")
    if not member.is_file:
        raise BadRequest(f"{req.path} is {kind(member.type)}, not a file")
    if member.size > READ_FILE_LIMIT:
        raise BadRequest(_too_large(req.path))


def _too_large(path: str) -> str:
    return (
        f"{path} is larger than {READ_FILE_LIMIT >> 20} MiB, the most read_file() returns;"
        " use download()"
    )


async def write_file(server: _Server, conn: Connection, req: WriteFile) -> Reply:
    """Handler of `WriteFile`: one file, parents created."""
    refuse_kernel_path(req.path)
    if req.path.endswith("/"):
        raise BadRequest(f"{req.path} names a folder, not a file")

    async def body() -> AsyncIterator[bytes]:
        yield single_file(req.path, req.data, mode=req.mode)

    await server.runtime.put_archive(req.sandbox_id, "/", body())
    return Done(id=req.id)


async def upload(server: _Server, conn: Connection, req: Upload) -> Reply:
    """Handler of `Upload`: unpack the tar stream the client sends at `path`."""
    refuse_kernel_path(req.path)
    receive = conn.open_inbound(req.id, WINDOW * 2)
    scanner = TarScanner()
    received = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal received
        await conn.send(StreamCredit(id=req.id, chunks=WINDOW))
        async for chunk in until_end(receive):
            # A member's header is checked before the chunk that completes it goes on.
            for member in scanner.feed(chunk):
                refuse_kernel_path(posixpath.join(req.path, member.name))
            received += len(chunk)
            yield chunk
            await conn.send(StreamCredit(id=req.id, chunks=1))

    await server.runtime.put_archive(req.sandbox_id, req.path, chunks())
    return TransferReply(id=req.id, stat=FileStat(path=req.path, size=received))


async def download(server: _Server, conn: Connection, req: Download) -> Reply:
    """Handler of `Download`: send `path` as a tar stream under the client's credit."""
    refuse_kernel_path(req.path)
    archive = server.runtime.get_archive(req.sandbox_id, req.path)
    async with contextlib.aclosing(archive) as tar:
        sent = await send_stream(conn.send, conn.gate(req.id), req.id, tar)
    return TransferReply(id=req.id, stat=FileStat(path=req.path, size=sent))


def refuse_kernel_path(path: str) -> None:
    """`BadRequest` for a path under /proc, /sys or /dev (see the rules above)."""
    clean = "/" + posixpath.normpath(path).lstrip("/")
    for top in KERNEL_DIRS:
        if clean == top or clean.startswith(top + "/"):
            raise BadRequest(
                f"{path} is under {top}, which holds the kernel's files: the file API would see "
                f"only the image's copy; use execute(['cat', {path!r}]) for kernel files"
            )


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


__all__ = [
    "READ_FILE_LIMIT",
    "download",
    "file_tar",
    "read_file",
    "refuse_kernel_path",
    "until_end",
    "upload",
    "write_file",
]
