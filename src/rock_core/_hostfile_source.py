"""`HostSource.from_hostfile`'s reader: the hosts listed in a file, read again on a change.

Rules:
- One host per line; ``#`` starts a comment; blank lines are skipped; only a line's first word
  counts (an MPI or DeepSpeed hostfile's ``slots=8`` is ignored). ``[01-40]`` ranges expand as
  in `open_cluster` (`_addresses.expand`), and a host listed twice is a `BadRequest`.
- The file is read again when its modification time, size or inode changes (an editor's
  atomic rename included), checked every `refresh` seconds; a changed text is taken once two
  looks in a row read it, and a read during which the file changed is not used: a file
  rewritten in place (``Path.write_text`` truncates it first) is never taken for its empty or
  half-written self, and one rewritten often with the same hosts is still followed.
  Reading a small file is quick and synchronous, so virtual time sees it as instant.
- A missing or unreadable file at the start is a `BadRequest` naming it; later, the last set
  is kept (`poll`), so a file caught mid-rewrite drains nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence

from ._addresses import expand
from ._errors import BadRequest
from ._host_sets import HostItem, ToHost, check_refresh, poll

Stamp = tuple[int, int, int]  # modification time, size, inode


def parse_hostfile(text: str) -> list[str]:
    """The host names of a hostfile's text, ranges expanded, in order."""
    names: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            names.append(words[0])
    return expand(names)


def read_if_changed(path: str, seen: Stamp | None) -> tuple[Stamp, str] | None:
    """The file's stamp and text, or None if its stamp is still `seen` (`BadRequest` if it
    cannot be read)."""
    try:
        status = os.stat(path)
        stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        if stamp == seen:
            return None
        with open(path, encoding="utf-8") as file:
            text = file.read()
            after = os.fstat(file.fileno())
        if (after.st_mtime_ns, after.st_size, after.st_ino) != stamp:
            return None  # written to while we read: read again at the next look
        return stamp, text
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, bad UTF-8 text
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BadRequest(f"cannot read the hostfile {path}: {reason}") from exc


class HostfileReader:
    """Reads the hosts of the file at `path` (a `HostReader`); see the module's rules."""

    def __init__(self, path: str | os.PathLike[str], *, refresh: float, host: ToHost) -> None:
        if not isinstance(path, str | os.PathLike):
            raise BadRequest(f"path must be a file's path, got {path!r}")
        self.path = os.fspath(path)
        self.refresh = check_refresh(refresh)
        self.host = host
        self._seen: Stamp | None = None
        self._pending: str | None = None  # a changed text, taken if the next look reads it too

    def __repr__(self) -> str:
        return f"HostSource.from_hostfile({self.path!r}, refresh={self.refresh:g})"

    def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        """The file's hosts, then its hosts again whenever it changed."""
        self._seen = self._pending = None
        return poll(self._read, self.refresh, f"hostfile {self.path}")

    async def _read(self) -> list[HostItem] | None:
        read = read_if_changed(self.path, self._seen)
        if read is None:
            return None
        stamp, text = read
        if self._seen is not None and text != self._pending:
            self._pending = text  # changed since the last look: taken once read twice
            return None
        self._seen, self._pending = stamp, None
        try:
            return [self.host(name) for name in parse_hostfile(text)]
        except BadRequest as exc:
            raise BadRequest(f"hostfile {self.path}: {exc}") from exc


__all__ = ["HostfileReader", "parse_hostfile"]
