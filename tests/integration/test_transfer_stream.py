"""A download unpacked as it arrives: the tar reader on pieces of any size, a stream that ends
early or holds nothing, and the feed that hands chunks to the unpacking thread under credit.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import anyio
import pytest

from rock_core import ProtocolError, TransportError
from rock_sdk._feed import ChunkFeed
from rock_sdk._unpack import unpack

pytestmark = pytest.mark.anyio


class Pieces:
    """A source that returns at most `step` bytes per read, whatever was asked."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, n: int, /) -> bytes:
        return self._data.read(min(n, self._step))


def archive(format: int, end: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as tar:
        for name, data, mtime in [
            ("root", None, 1_600_000_000),
            ("root/" + "deep/" * 25 + "long.bin", os.urandom(70_000), 1_600_000_001.5),
            ("root/small.txt", b"hello", 1_600_000_002),
            ("root/empty", b"", 1_600_000_003),
        ]:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return data if end else data[: data.rindex(b"hello") + 512]  # no closing zero blocks


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("step", [1, 7, 511, 513, 1 << 20])
def test_unpack_on_pieces_of_any_size_matches_tarfile(
    tmp_path: Path, format: int, step: int
) -> None:
    data = archive(format)
    unpack(Pieces(data, step), tmp_path / "ours", "/data/root")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp_path / "theirs", filter="data")
    theirs = tmp_path / "theirs" / "root"
    members = {
        m.name.removeprefix("root").lstrip("/") for m in tarfile.open(fileobj=io.BytesIO(data))
    }
    assert len(members) == 4
    for path in [theirs, *sorted(theirs.rglob("*"))]:
        name = str(path.relative_to(theirs)).removeprefix(".")
        ours = tmp_path / "ours" / name
        assert ours.is_dir() == path.is_dir(), path
        if path.is_file():
            assert ours.read_bytes() == path.read_bytes()
            assert ours.stat().st_mode & 0o777 == 0o640 | 0o600
        if name in members:  # folders on the way to a member have no times of their own
            assert ours.stat().st_mtime == path.stat().st_mtime, path


def test_an_archive_without_its_closing_blocks_ends_at_its_last_member(tmp_path: Path) -> None:
    unpack(Pieces(archive(tarfile.PAX_FORMAT, end=False), 4096), tmp_path / "out", "/root")
    assert (tmp_path / "out" / "small.txt").read_bytes() == b"hello"
    assert not (tmp_path / "out" / "empty").exists()  # it was after the cut


def test_a_stream_that_ends_inside_a_member_leaves_nothing(tmp_path: Path) -> None:
    data = archive(tarfile.PAX_FORMAT)
    with pytest.raises(
        ProtocolError, match=r"^the download of /root ended before its archive did$"
    ):
        unpack(Pieces(data[: data.index(b"hello") + 2], 4096), tmp_path / "out", "/root")
    assert os.listdir(tmp_path) == []


def test_an_empty_stream_is_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(
        ProtocolError, match=r"^the download of /x is not a tar stream: it is empty$"
    ):
        unpack(Pieces(b"", 1), tmp_path / "x", "/x")
    assert os.listdir(tmp_path) == []


def test_a_sparse_member_is_skipped_and_listed(tmp_path: Path) -> None:
    info = tarfile.TarInfo("root/holes")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 0
    folder = tarfile.TarInfo("root")
    folder.type = tarfile.DIRTYPE
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(folder)
        tar.addfile(info, io.BytesIO(b""))
    result = unpack(Pieces(buffer.getvalue(), 512), tmp_path / "out", "/data/root")
    assert result.skipped == ["/data/root/holes: a sparse file, skipped"]
    assert os.listdir(tmp_path / "out") == []


async def test_the_feed_grants_a_credit_for_each_chunk_taken_and_ends() -> None:
    granted: list[int] = []

    async def grant() -> None:
        granted.append(1)

    feed = ChunkFeed(grant)
    chunk = b"a" * 1000
    await feed.put(chunk)
    await feed.put(b"bc", end=True)

    def read_all() -> list[bytes]:
        return [feed.read(600), feed.read(600), feed.read(), feed.read(), feed.read()]

    first, rest, whole, end, again = await anyio.to_thread.run_sync(read_all)
    assert (first, rest, end, again) == (b"a" * 600, b"a" * 400, b"", b"")
    assert whole is not None and whole == b"bc"
    assert granted == [1, 1]  # one per chunk, none for the end


async def test_a_whole_chunk_is_handed_over_as_it_is() -> None:
    async def grant() -> None:
        pass

    feed = ChunkFeed(grant)
    chunk = os.urandom(1 << 20)
    await feed.put(chunk, end=True)
    assert await anyio.to_thread.run_sync(feed.read, 1 << 20) is chunk


async def test_an_aborted_feed_stops_its_reader() -> None:
    async def grant() -> None:
        pass

    feed = ChunkFeed(grant)
    errors: list[Exception] = []

    async def reader() -> None:
        try:
            await anyio.to_thread.run_sync(feed.read, 10)
        except TransportError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.2)  # the reader waits in its thread for a chunk
        feed.abort()
    assert [str(e) for e in errors] == ["the download was abandoned"]


async def test_data_after_the_end_of_a_download_is_a_protocol_error() -> None:
    async def grant() -> None:
        pass

    feed = ChunkFeed(grant)
    await feed.put(b"last", end=True)
    with pytest.raises(ProtocolError) as caught:
        await feed.put(b"more")
    assert caught.value.message == "the agent sent download data after its end"
    assert await anyio.to_thread.run_sync(feed.read, 10) == b"last"
