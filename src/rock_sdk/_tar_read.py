"""A tar stream read as it arrives, its content handed out in the pieces it came in.

`tarfile`'s stream mode copies every byte of content four or five times (its read buffer is
joined and sliced at each read) and costs more than the whole transfer before it; here a
member's content is handed out as views of the pieces read from the source, and the headers are
read by `rock_core.tar.TarScanner` (PAX and GNU long names, as the agent reads uploads).

Rules:
- The source is anything with `read(n)` returning at most `n` bytes, empty at its end.
- A stream that is not a tar archive, or ends inside a member or before any member, is a
  `ProtocolError` (the peer's fault); one that ends at a member boundary without its closing
  zero blocks ends there, as `tarfile` allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from rock_core import BadRequest, ProtocolError
from rock_core.tar import BLOCK, Member, TarScanner

READ_SIZE = 1 << 20


class Source(Protocol):
    """Where the stream's bytes come from (a file, or the chunks of a download)."""

    def read(self, n: int, /) -> bytes:
        """At most `n` bytes; empty at the end."""


class TarReader:
    """The members of a tar stream in order, each with its content (see the rules)."""

    def __init__(self, source: Source, what: str) -> None:
        self._source = source
        self._what = what  # "the download of /path", for errors
        self._piece = memoryview(b"")
        self._scanner = TarScanner()

    def members(self) -> Iterator[Member]:
        """Each member's header; its content may be read with `content` before the next."""
        seen = False
        while not self._scanner.ended:
            block = self._block()
            if block is None:
                if seen:
                    return
                raise ProtocolError(f"{self._what} is not a tar stream: it is empty")
            for member in self._feed(block):
                seen = True
                yield member
                while self._scanner.remaining:  # content the caller did not read
                    self._feed(self._read(self._scanner.remaining))

    def content(self, member: Member) -> Iterator[memoryview]:
        """The content of `member` (the one `members` gave last), in the pieces it came in."""
        left = member.size if self._scanner.remaining else 0
        while left:
            piece = self._read(left)
            left -= len(piece)
            self._feed(piece)
            yield piece

    def _read(self, n: int) -> memoryview:
        if not self._piece:
            self._piece = memoryview(self._source.read(READ_SIZE))
            if not self._piece:
                raise ProtocolError(f"{self._what} ended before its archive did")
        piece, self._piece = self._piece[:n], self._piece[n:]
        return piece

    def _block(self) -> bytes | None:
        """The next whole block, or None at the end of the stream."""
        pieces: list[memoryview] = []
        need = BLOCK
        while need:
            try:
                piece = self._read(need)
            except ProtocolError:
                if not pieces:
                    return None
                raise
            pieces.append(piece)
            need -= len(piece)
        return b"".join(pieces)

    def _feed(self, data: bytes | memoryview) -> list[Member]:
        try:
            return self._scanner.feed(data)
        except BadRequest as exc:
            why = exc.message.removeprefix("not a tar stream: ")  # the scanner's own words
            raise ProtocolError(f"{self._what} is not a tar stream: {why}") from exc


__all__ = ["READ_SIZE", "Source", "TarReader"]
