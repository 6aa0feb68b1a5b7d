"""A download's tar stream from a buggy or hostile agent: names, sizes and times no file system
holds are our errors (or brought within range), never a foreign exception, and leave nothing."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from rock_core import BadRequest, ProtocolError
from rock_core._tar import TIME_LIMIT
from rock_core.tar import TarScanner
from rock_sdk._unpack import unpack


def one_file(pax: dict[str, str] | None = None, mtime: float = 0) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size, info.mtime, info.pax_headers = 3, mtime, pax or {}
        tar.addfile(info, io.BytesIO(b"abc"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("pax", "why"),
    [
        ({"path": "a\0b"}, "member 'a\\x00b' has a NUL byte in its name"),
        ({"linkpath": "a\0b"}, "member 'f' has a NUL byte in its name"),
        ({"size": "9" * 5000}, "a PAX size that is not a number"),
        ({"size": "\u00b2"}, "a PAX size that is not a number"),  # a digit int() refuses
    ],
)
def test_a_name_or_size_no_file_system_holds_is_not_a_tar_stream(
    tmp_path: Path, pax: dict[str, str], why: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        unpack(io.BytesIO(one_file(pax)), tmp_path / "out", "/x/f")
    assert caught.value.message == f"the download of /x/f is not a tar stream: {why}"
    assert os.listdir(tmp_path) == []
    with pytest.raises(BadRequest) as refused:  # the agent reads uploads with the same scanner
        TarScanner().feed(one_file(pax))
    assert refused.value.message == f"not a tar stream: {why}"


@pytest.mark.parametrize(
    ("pax", "mtime", "kept"),
    [
        ({"mtime": "1e300"}, 0, TIME_LIMIT),
        ({"mtime": "-1e300"}, 0, -TIME_LIMIT),
        ({}, 1 << 70, TIME_LIMIT),  # a base-256 header field
        ({"mtime": "nan"}, 1_600_000_000, 1_600_000_000),
    ],
)
def test_a_time_the_platform_cannot_hold_is_brought_within_range(
    tmp_path: Path, pax: dict[str, str], mtime: float, kept: float
) -> None:
    (member,) = TarScanner().feed(one_file(pax, mtime))
    assert member.mtime == kept
    unpack(io.BytesIO(one_file(pax, mtime)), tmp_path / "out", "/x/f")
    assert (tmp_path / "out").read_bytes() == b"abc"  # the file system may cut the time again
