"""The archives themselves, as data: an unpack that writes nothing outside its target (a
hostile archive) and leaves nothing when cancelled, the scanner that checks an upload's members
as the stream passes, an archive that is broken.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import anyio
import pytest

from rock_core._errors import ProtocolError
from rock_core._tar import TarScanner
from rock_sdk import BadRequest
from rock_sdk._unpack import unpack

pytestmark = pytest.mark.anyio


def crafted_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def member(name: str, type: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = 0o4777 if type == tarfile.REGTYPE else 0o755
    return info


def test_a_hostile_archive_writes_nothing_outside_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    spool = crafted_tar(
        [
            (member("root", tarfile.DIRTYPE), b""),
            (member("root/evil", tarfile.SYMTYPE, str(outside)), b""),
            (member("root/evil/through.txt"), b"through a link"),
            (member("root/../escaped.txt"), b"climbed out"),
            (member("/abs.txt"), b"absolute"),
            (member("root/null", tarfile.CHRTYPE), b""),
            (member("root/hard", tarfile.LNKTYPE, "/etc/passwd"), b""),
            (member("root/ok.txt"), b"fine"),
            (member("root/ok.txt", tarfile.SYMTYPE, "/etc/passwd"), b""),
            (member("root/ok.txt"), b"written again, not through the link"),
        ]
    )
    result = unpack(spool, tmp_path / "out", "/data/root")
    assert result.skipped == [
        "/data/root/evil/through.txt: its name leads out of the download, skipped",
        "/data/root/../escaped.txt: its name leads out of the download, skipped",
        "/abs.txt: its name leads out of the download, skipped",
        "/data/root/null: a character device, skipped",
        "/data/root/hard: a hard link to /etc/passwd, not a file of this download, skipped",
    ]
    assert os.listdir(outside) == []
    assert sorted(os.listdir(tmp_path)) == ["out", "outside"]
    assert os.readlink(tmp_path / "out" / "evil") == str(outside)
    ok = tmp_path / "out" / "ok.txt"
    assert ok.read_bytes() == b"written again, not through the link" and not ok.is_symlink()
    assert ok.stat().st_mode & 0o7777 == 0o755  # no setuid, no group/other write


async def test_a_cancelled_unpack_stops_and_leaves_nothing(tmp_path: Path) -> None:
    files = [(member(f"root/f{i}"), b"x" * 1000) for i in range(50)]
    archive = crafted_tar([(member("root", tarfile.DIRTYPE), b""), *files]).getvalue()
    with anyio.CancelScope() as scope:

        class CancelledWhileRead(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                anyio.from_thread.run_sync(scope.cancel)  # the caller gives up mid-unpack
                return super().read(size)

        spool = CancelledWhileRead(archive)
        check = anyio.from_thread.check_cancelled
        await anyio.to_thread.run_sync(unpack, spool, tmp_path / "out", "/root", check)
    assert scope.cancelled_caught
    assert os.listdir(tmp_path) == []  # no target, no staging folder


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("step", [1, 511, 512, 4096])
def test_the_scanner_reads_member_headers_as_tarfile_does(format: int, step: int) -> None:
    # The agent checks an upload's members with it as the stream passes, in chunks of any size.
    long = "deep/" * 30 + "name.txt"  # past ustar's 100 bytes: a PAX or GNU long name
    members = [
        (member("root", tarfile.DIRTYPE), b""),
        (member("root/" + long), b"x" * 1000),
        (member("root/link", tarfile.SYMTYPE, "/" + long), b""),
        (member("root/pipe", tarfile.FIFOTYPE), b""),
        (member("root/empty"), b""),
    ]
    if format == tarfile.USTAR_FORMAT:
        members[2][0].linkname = "/short"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue() + b"trailing garbage is never read"
    scanner = TarScanner()
    seen = []
    for offset in range(0, len(data), step):
        seen += scanner.feed(data[offset : offset + step])
    buffer.seek(0)
    expected = [(m.name, m.type, m.size, m.linkname) for m in tarfile.open(fileobj=buffer)]
    assert [(m.name, m.type, m.size, m.linkname) for m in seen] == expected
    assert scanner.ended


def test_the_scanner_refuses_what_is_not_tar() -> None:
    with pytest.raises(BadRequest, match=r"^not a tar stream: invalid header$"):
        TarScanner().feed(b"x" * 512)


def test_a_broken_archive_is_a_protocol_error(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match=r"^the download of /x is not a tar stream: "):
        unpack(io.BytesIO(b"not a tar archive" * 64), tmp_path / "x", "/x")
    assert os.listdir(tmp_path) == []
