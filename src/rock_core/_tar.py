"""Pieces of a tar stream, built and read without I/O, so files of any size can be streamed.

A tar stream is, per member, a 512-byte header, the content, and zero padding to a multiple of
512; two zero blocks end it. The caller reads the content in chunks between header and padding.

Rules:
- Building: one function per member kind (file, folder, symlink), PAX format, so long names,
  long link targets and names that are not UTF-8 (surrogate escapes) all fit.
- Reading: `TarScanner` follows a stream chunk by chunk and reports each member's header as
  soon as it is complete, without keeping content; what it accepts is what Go's archive/tar (the
  engine's reader and writer) accepts: PAX and GNU long names, header-only link/device/folder
  types. A stream it cannot read is a `BadRequest`, and so is one no file system could hold:
  a name or link target with a NUL byte, a size of more than 20 digits. A time outside
  `TIME_LIMIT` seconds of 1970 is brought within it (the platform's `time_t` may not hold it).
"""

from __future__ import annotations

import math
import tarfile
import time
from dataclasses import dataclass

from ._errors import BadRequest

BLOCK = 512
END = b"\0" * (2 * BLOCK)
ENCODING = "utf-8"
MAX_EXTENDED_HEADER = 1 << 20  # bytes of PAX / GNU long-name content one member may carry
TIME_LIMIT = float(1 << 40)  # seconds either side of 1970 a member's time is kept within

# Types whose header carries no content, whatever its size field says (as in Go's archive/tar).
_HEADER_ONLY = {
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
}
_EXTENDED = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
_GNU_LONG = {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}


def _info(name: str, mode: int, mtime: float | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = int(time.time() if mtime is None else mtime)
    return info


def _encode(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding=ENCODING, errors="surrogateescape")


def file_header(name: str, size: int, *, mode: int = 0o644, mtime: float | None = None) -> bytes:
    """The header of a regular file member `name` with `size` bytes."""
    info = _info(name.lstrip("/"), mode, mtime)
    info.size = size
    return _encode(info)


def dir_header(name: str, *, mode: int = 0o755, mtime: float | None = None) -> bytes:
    """The header of a folder member `name`."""
    info = _info(name.lstrip("/").rstrip("/") + "/", mode, mtime)
    info.type = tarfile.DIRTYPE
    return _encode(info)


def symlink_header(name: str, target: str, *, mtime: float | None = None) -> bytes:
    """The header of a symlink member `name` pointing at `target` (kept as it is)."""
    info = _info(name.lstrip("/"), 0o777, mtime)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return _encode(info)


def padding(size: int) -> bytes:
    """Zeros that round a member's content of `size` bytes up to whole blocks."""
    return b"\0" * (-size % BLOCK)


def single_file(name: str, data: bytes, *, mode: int = 0o644) -> bytes:
    """A whole tar stream holding one small file."""
    return file_header(name, len(data), mode=mode) + data + padding(len(data)) + END


_KINDS = {
    tarfile.REGTYPE: "a file",
    tarfile.AREGTYPE: "a file",
    tarfile.CONTTYPE: "a file",
    tarfile.GNUTYPE_SPARSE: "a file",
    tarfile.DIRTYPE: "a folder",
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
}


def kind(type: bytes) -> str:
    """What a member of tar type `type` is, in words ("a FIFO", "a character device", ...)."""
    return _KINDS.get(type, f"a member of tar type {type!r}")


@dataclass(frozen=True, slots=True)
class Member:
    """One member's header as read from a stream."""

    name: str
    type: bytes
    size: int
    linkname: str = ""
    mode: int = 0o644
    mtime: float = 0.0

    @property
    def is_file(self) -> bool:
        """True for a regular file."""
        return kind(self.type) == "a file"

    @property
    def is_dir(self) -> bool:
        """True for a folder."""
        return self.type == tarfile.DIRTYPE

    @property
    def is_link(self) -> bool:
        """True for a symlink or a hard link."""
        return self.type in (tarfile.SYMTYPE, tarfile.LNKTYPE)


class TarScanner:
    """Follows a tar stream fed in chunks of any size; `feed` returns the members completed."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # content and padding of the current member still to pass over
        self._extended: tuple[bytes, int] | None = None  # (type, size) whose content we collect
        self._pending: dict[str, str] = {}  # path/linkpath/size from PAX or GNU headers
        self._global: dict[str, str] = {}
        self.ended = False

    @property
    def remaining(self) -> int:
        """Bytes of the current member's content and padding still to pass over."""
        return self._skip

    def feed(self, data: bytes | memoryview) -> list[Member]:
        """Take the next bytes of the stream; return every member whose header they complete."""
        members: list[Member] = []
        view = memoryview(data)
        while view and not self.ended:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = BLOCK if self._extended is None else _blocks(self._extended[1])
            take = min(need - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < need:
                break
            block, self._buffer = bytes(self._buffer), bytearray()
            if self._extended is None:
                member = self._header(block)
                if member is not None:
                    members.append(member)
            else:
                self._extension(block)
        return members

    def _header(self, block: bytes) -> Member | None:
        if not any(block):
            self.ended = True  # a zero block: the end of the archive
            return None
        try:
            info = tarfile.TarInfo.frombuf(block, ENCODING, "surrogateescape")
        except tarfile.HeaderError as exc:
            raise BadRequest(f"not a tar stream: {exc}") from exc
        if info.type in _EXTENDED or info.type in _GNU_LONG:
            if not 0 <= info.size <= MAX_EXTENDED_HEADER:
                raise BadRequest(f"a tar extended header of {info.size} bytes is too large")
            self._extended = (info.type, info.size)
            if info.size == 0:
                self._extension(b"")
            return None
        fields = {**self._global, **self._pending}
        self._pending = {}
        size = int(fields["size"]) if "size" in fields else info.size
        if size < 0:
            raise BadRequest(f"not a tar stream: member {info.name!r} has a negative size")
        if info.type not in _HEADER_ONLY:
            self._skip = _blocks(size)
        name = fields.get("path", info.name)
        linkname = fields.get("linkpath", info.linkname)
        if "\0" in name or "\0" in linkname:
            raise BadRequest(f"not a tar stream: member {name!r} has a NUL byte in its name")
        return Member(name, info.type, size, linkname, info.mode, _mtime(fields, info.mtime))

    def _extension(self, content: bytes) -> None:
        assert self._extended is not None
        kind, size = self._extended
        self._extended = None
        content = content[:size]
        if kind in _GNU_LONG:
            value = content.rstrip(b"\0").decode(ENCODING, "surrogateescape")
            self._pending["path" if kind == tarfile.GNUTYPE_LONGNAME else "linkpath"] = value
            return
        target = self._global if kind == tarfile.XGLTYPE else self._pending
        target.update(_pax_records(content))


def _mtime(fields: dict[str, str], default: float) -> float:
    """A PAX mtime (seconds, maybe fractional) if there is a valid one, else the header's;
    within `TIME_LIMIT`."""
    try:
        value = float(fields["mtime"])
    except (KeyError, ValueError):
        value = default
    value = value if math.isfinite(value) else default
    return min(max(value, -TIME_LIMIT), TIME_LIMIT)


def _blocks(size: int) -> int:
    return size + (-size % BLOCK)


def _pax_records(content: bytes) -> dict[str, str]:
    """The records of a PAX extended header: `<length> <key>=<value>\\n` each."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(content) and content[pos] != 0:
        space = content.find(b" ", pos)
        try:
            length = int(content[pos:space])
        except ValueError:
            raise BadRequest("not a tar stream: a malformed PAX record") from None
        record = content[space + 1 : pos + length]
        if length <= 0 or space < 0 or not record.endswith(b"\n") or b"=" not in record:
            raise BadRequest("not a tar stream: a malformed PAX record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode(ENCODING, "surrogateescape")] = value.decode(ENCODING, "surrogateescape")
        pos += length
    size = records.get("size", "0")
    if not (size.isascii() and size.isdigit() and len(size) <= 20):
        raise BadRequest("not a tar stream: a PAX size that is not a number")
    return records


__all__ = [
    "BLOCK",
    "END",
    "Member",
    "TarScanner",
    "dir_header",
    "file_header",
    "kind",
    "padding",
    "single_file",
    "symlink_header",
]
