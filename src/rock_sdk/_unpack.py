"""The local side of a download: unpack its tar stream into place, as `docker cp` copies.

Rules:
- Like `docker cp` and `cp -r`: into an existing folder, else to the path itself (replacing a
  file, link or folder there). Symlinks are made as symlinks with their targets unchanged,
  absolute ones too; a hard link to a file of the same download stays a hard link.
- Nothing is ever written outside the target, and never through a link. Members are unpacked
  into a fresh staging folder beside the target, which one rename then puts in place. A member
  whose name climbs out (absolute, `..`) or whose folder is a link or a file is skipped; a file
  is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, after removing whatever held its name.
- Device files, FIFOs and other special files cannot be made safely (nor, mostly, without
  privileges): each is skipped and listed, with why, by its path in the sandbox.
- Modes lose setuid, setgid, sticky and group/other write, and the owner may always read and
  write (as tarfile's "data" filter does); owners are not copied (the files are the caller's).
- Errors (see `_local`): a local `OSError` is a `BadRequest` naming the path; a stream that is
  not a tar archive is a `ProtocolError` (the peer's fault, not the caller's).
- A download that fails leaves nothing: not its staging folder, nor the folders made for it
  (the stream is unpacked as it arrives, so a failure may come after they were made).
- It runs in a worker thread and calls `check` between members and chunks (the SDK passes
  `anyio.from_thread.check_cancelled`), so a cancelled caller stops it and nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rock_core import BadRequest, ProtocolError, RockError
from rock_core.tar import Member, kind

from ._local import describe, local_error
from ._tar_read import Source, TarReader

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class Unpacked:
    """What a download put in place."""

    is_dir: bool
    skipped: list[str] = field(default_factory=list)


def unpack(
    spool: Source, local: Path, remote: str, check: Callable[[], None] = lambda: None
) -> Unpacked:
    """Unpack the archive of `remote` read from `spool` to `local` (see the rules)."""
    try:
        return _unpack(spool, local, remote, check)
    except RockError:
        raise  # ours already (some of ours are OSErrors too: `FileNotFound`, `TransportError`)
    except OSError as exc:
        raise local_error(exc, str(exc.filename or local), "write") from exc


def _unpack(spool: Source, local: Path, remote: str, check: Callable[[], None]) -> Unpacked:
    try:
        here = os.lstat(local)
    except FileNotFoundError:
        here = None
    if here is not None and not (
        stat.S_ISDIR(here.st_mode) or stat.S_ISREG(here.st_mode) or stat.S_ISLNK(here.st_mode)
    ):
        raise BadRequest(f"local {local} is {describe(here.st_mode)}; not replacing it")
    into = local.is_dir()  # followed if it is a link, as `cp` follows its destination
    parent = local if into else local.parent
    made = [folder for folder in (parent, *parent.parents) if not folder.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".rock-download-", dir=parent)
    done = False
    try:
        extractor = _Extractor(staging, posixpath.dirname(remote.rstrip("/")), check)
        archive = TarReader(spool, f"the download of {remote}")
        for member in archive.members():
            extractor.add(archive, member)
        extractor.finish()
        entries = os.listdir(staging)
        if not entries and extractor.skipped:
            raise BadRequest(f"nothing to download: {extractor.skipped[0]}")
        if len(entries) != 1:
            raise ProtocolError(f"the download of {remote} did not hold exactly one root entry")
        target = local / entries[0] if into else local
        _remove(str(target))
        os.rename(os.path.join(staging, entries[0]), target)
        done = True
        return Unpacked(stat.S_ISDIR(os.lstat(target).st_mode), extractor.skipped)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made if not done else ():  # a failed download leaves no folders either
            with contextlib.suppress(OSError):
                folder.rmdir()


class _Extractor:
    """Makes members under `staging`, refusing any that would land outside it."""

    def __init__(self, staging: str, base: str, check: Callable[[], None]) -> None:
        self.staging = staging
        self.base = base  # the sandbox folder the archive's names are relative to
        self.check = check
        self.skipped: list[str] = []
        self._folders: list[tuple[str, int, float]] = []

    def add(self, archive: TarReader, member: Member) -> None:
        self.check()
        where = posixpath.join(self.base, member.name)
        parts = _parts(member.name)
        folder = self._folder(parts[:-1], create=True) if parts else None
        if folder is None:
            self.skipped.append(f"{where}: its name leads out of the download, skipped")
            return
        dest = os.path.join(folder, parts[-1])
        if member.is_dir:
            existing = _lstat(dest)
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                _remove(dest)
                os.mkdir(dest, 0o700)
            self._folders.append((dest, (member.mode & 0o755) | 0o700, member.mtime))
        elif member.is_file and member.type != tarfile.GNUTYPE_SPARSE:
            _remove(dest)
            self._write(archive.content(member), member, dest)
        elif member.type == tarfile.SYMTYPE:
            _remove(dest)
            os.symlink(member.linkname, dest)
            os.utime(dest, (member.mtime, member.mtime), follow_symlinks=False)
        elif member.type == tarfile.LNKTYPE:
            self._hard_link(member, dest, where)
        else:
            sparse = member.type == tarfile.GNUTYPE_SPARSE
            self.skipped.append(
                f"{where}: {'a sparse file' if sparse else kind(member.type)}, skipped"
            )

    def finish(self) -> None:
        """Give folders their modes and times, deepest first (their content is complete)."""
        for path, mode, mtime in reversed(self._folders):
            info = _lstat(path)
            if info is not None and stat.S_ISDIR(info.st_mode):  # never chmod through a link
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime))

    def _folder(self, parts: list[str], *, create: bool) -> str | None:
        """The staging path of folder `parts`, each step a real folder, or None."""
        path = self.staging
        for part in parts:
            path = os.path.join(path, part)
            info = _lstat(path)
            if info is None and create:
                os.mkdir(path, 0o700)
            elif info is None or not stat.S_ISDIR(info.st_mode):
                return None
        return path

    def _write(self, content: Iterator[memoryview], member: Member, dest: str) -> None:
        fd = os.open(dest, _CREATE, 0o600)
        try:
            for piece in content:
                while piece:
                    piece = piece[os.write(fd, piece) :]
                self.check()
            os.fchmod(fd, (member.mode & 0o755) | 0o600)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _hard_link(self, member: Member, dest: str, where: str) -> None:
        parts = _parts(member.linkname)
        folder = self._folder(parts[:-1], create=False) if parts else None
        source = os.path.join(folder, parts[-1]) if folder is not None else None
        info = _lstat(source) if source is not None else None
        if source is None or info is None or not stat.S_ISREG(info.st_mode):
            self.skipped.append(
                f"{where}: a hard link to {member.linkname}, not a file of this download, skipped"
            )
            return
        _remove(dest)
        os.link(source, dest, follow_symlinks=False)


def _parts(name: str) -> list[str]:
    """The steps of an archive name, or [] for one that is absolute or climbs with `..`."""
    if name.startswith("/"):
        return []
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return [] if ".." in parts else parts


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    """Remove whatever is at `path` (a link itself, never its target)."""
    info = _lstat(path)
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


__all__ = ["Unpacked", "unpack"]
