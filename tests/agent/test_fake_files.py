"""The agent's file requests on `FakeRuntime`: whole files, and tar streams both ways."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator

import anyio
import pytest

from rock_core._connection import raise_for_reply
from rock_core._errors import BadRequest, FileNotFound
from rock_core._protocol import (
    CreateSandbox,
    Done,
    Download,
    FileReply,
    ReadFile,
    Reply,
    SandboxReply,
    StreamData,
    TransferReply,
    Upload,
    WriteFile,
)

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "files"


async def make_box(fake: Fake) -> None:
    conn = fake.conn
    await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec()), SandboxReply)


@covers(WriteFile, ReadFile)
async def test_a_file_written_reads_back_and_lands_under_the_root() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        conn = fake.conn
        data = bytes(range(256)) * 100
        await conn.call(
            WriteFile(id=conn.next_id(), sandbox_id=BOX, path="/data/deep/f.bin", data=data), Done
        )
        reply = await conn.call(
            ReadFile(id=conn.next_id(), sandbox_id=BOX, path="/data/deep/f.bin"), FileReply
        )
        assert reply.data == data
        assert (fake.runtime.sandbox_root(BOX) / "data/deep/f.bin").read_bytes() == data

        async def read(path: str) -> FileReply:
            return await conn.call(
                ReadFile(id=conn.next_id(), sandbox_id=BOX, path=path), FileReply
            )

        with pytest.raises(FileNotFound, match="/data/missing: no such file or folder in sandbox"):
            await read("/data/missing")
        with pytest.raises(BadRequest, match="/data/deep is a folder; use download"):
            await read("/data/deep")
        with pytest.raises(BadRequest, match="/proc/1/environ is under /proc"):
            await read("/proc/1/environ")


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@covers(Upload, Download)
async def test_tar_streams_go_up_and_come_back() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        conn = fake.conn
        files = {"up/a.txt": b"alpha", "up/b/c.bin": b"\0" * 70000}
        upload = Upload(id=conn.next_id(), sandbox_id=BOX, path="/tmp")
        payload = archive(files)

        async def chunks() -> AsyncIterator[bytes]:
            for at in range(0, len(payload), 4096):
                yield payload[at : at + 4096]

        with anyio.fail_after(30):
            async with conn.open_request(upload) as answers, anyio.create_task_group() as tg:
                tg.start_soon(conn.send_chunks, upload.id, chunks())
                async for message in answers:
                    if isinstance(message, Reply):
                        stat = raise_for_reply(message, TransferReply, upload).stat
                        break
        assert stat.size == len(payload)
        assert (fake.runtime.sandbox_root(BOX) / "tmp/up/b/c.bin").read_bytes() == b"\0" * 70000

        download = Download(id=conn.next_id(), sandbox_id=BOX, path="/tmp/up")
        received = bytearray()
        with anyio.fail_after(30):
            async with conn.open_request(download) as answers:
                await conn.grant(download.id)
                async for message in answers:
                    if isinstance(message, StreamData):
                        received += message.data
                        await conn.grant(download.id, 1)
                    else:
                        sent = raise_for_reply(message, TransferReply, download).stat
                        break
        assert sent.size == len(received)
        with tarfile.open(fileobj=io.BytesIO(bytes(received))) as tar:
            got = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        assert got == files


@covers(Upload)
async def test_an_upload_into_the_kernel_folders_is_refused() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        conn = fake.conn
        upload = Upload(id=conn.next_id(), sandbox_id=BOX, path="/")
        payload = archive({"proc/x": b"no"})

        async def chunks() -> AsyncIterator[bytes]:
            yield payload

        with pytest.raises(BadRequest, match="/proc/x is under /proc"), anyio.fail_after(30):
            async with conn.open_request(upload) as answers:
                await conn.send_chunks(upload.id, chunks())  # one chunk: within the credit
                async for message in answers:
                    if isinstance(message, Reply):
                        raise_for_reply(message, TransferReply, upload)
        assert not (fake.runtime.sandbox_root(BOX) / "proc").exists()
