"""Pieces of a tar stream, built without I/O, so files of any size can be streamed.

A tar stream is, per member, a 512-byte header, the content, and zero padding to a multiple of
512; two zero blocks end it. The caller reads the content in chunks between header and padding.
"""

from __future__ import annotations

import tarfile
import time

BLOCK = 512
END = b"\0" * (2 * BLOCK)


def file_header(name: str, size: int, *, mode: int = 0o644, mtime: float | None = None) -> bytes:
    """The header of a regular file member `name` with `size` bytes."""
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size = size
    info.mode = mode
    info.mtime = int(time.time() if mtime is None else mtime)
    return info.tobuf(format=tarfile.PAX_FORMAT)


def dir_header(name: str, *, mode: int = 0o755, mtime: float | None = None) -> bytes:
    """The header of a folder member `name`."""
    info = tarfile.TarInfo(name.lstrip("/").rstrip("/") + "/")
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(time.time() if mtime is None else mtime)
    return info.tobuf(format=tarfile.PAX_FORMAT)


def padding(size: int) -> bytes:
    """Zeros that round a member's content of `size` bytes up to whole blocks."""
    return b"\0" * (-size % BLOCK)


def single_file(name: str, data: bytes, *, mode: int = 0o644) -> bytes:
    """A whole tar stream holding one small file."""
    return file_header(name, len(data), mode=mode) + data + padding(len(data)) + END
