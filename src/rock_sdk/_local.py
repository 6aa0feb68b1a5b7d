"""The local side of an upload: walk a file or folder, then stream it as a tar archive.

Rules:
- The whole tree is walked (with `lstat`, in a worker thread) before anything is sent, so a
  problem found in the tree fails the upload before a byte leaves.
- Symlinks travel as symlinks, their targets unchanged (absolute ones too), files and folders
  alike; a link is never entered, so a loop is harmless. Only the root given by the caller is
  followed, as `cp -r` follows its argument.
- FIFOs, sockets and devices are never opened (opening a FIFO blocks until a writer comes):
  they are skipped and listed in `Tree.skipped`, as downloads skip what they cannot create.
- A file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked to be a regular file again, so a
  file swapped for a FIFO or a link after the walk cannot block or redirect the upload.
- Local `OSError`s become our tree (`local_error`): a missing path is `FileNotFound`, anything
  else (permission denied, not a directory, disk full, ...) is `BadRequest` naming the path and
  the system's reason. `BadRequest`, because the fix is the caller's, on the caller's machine;
  it is neither the link's fault (`TransportError`) nor the sandbox's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio

from rock_core import BadRequest, FileNotFound, RockError
from rock_core.tar import END, dir_header, file_header, padding, symlink_header

READ_CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def local_error(exc: OSError, path: str, verb: str = "read") -> RockError:
    """Our error for a local `OSError` met while trying to `verb` `path` (see the rules)."""
    if isinstance(exc, FileNotFoundError) and verb == "read":
        return FileNotFound(f"{path}: no such local file or folder")
    reason = exc.strerror or type(exc).__name__
    return BadRequest(f"cannot {verb} local {path}: {reason} (errno {exc.errno})")


def describe(mode: int) -> str:
    """What a file of `mode` is, in words ("a FIFO", "a socket", ...), for any but a file."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return f"a special file (mode {stat.S_IFMT(mode):o})"


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of an upload: where it is here, and its name in the archive."""

    path: str
    name: str
    kind: Literal["file", "dir", "link"]
    mode: int
    mtime: float
    size: int = 0
    target: str = ""


@dataclass(slots=True)
class Tree:
    """What an upload sends, in order (parents first), and what it leaves out."""

    is_dir: bool
    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def walk(local: str, name: str) -> Tree:
    """The tree at `local` (followed if it is a symlink) as archive members under `name`."""
    try:
        root = os.stat(local)
    except OSError as exc:
        raise local_error(exc, local) from exc
    if stat.S_ISREG(root.st_mode):
        tree = Tree(is_dir=False)
        # The file itself, not the link the caller named: files are opened without following.
        tree.entries.append(_entry(os.path.realpath(local), name, root))
        return tree
    if not stat.S_ISDIR(root.st_mode):
        raise BadRequest(f"{local} is {describe(root.st_mode)}, not a file or folder")
    tree = Tree(is_dir=True)
    folders = [(local, name, root)]
    while folders:
        path, arcname, info = folders.pop()
        tree.entries.append(_entry(path, arcname, info))
        try:
            with os.scandir(path) as listing:
                children = sorted(listing, key=lambda child: child.name)
            found = [(child, child.stat(follow_symlinks=False)) for child in children]
        except OSError as exc:
            raise local_error(exc, exc.filename or path) from exc
        below = []
        for child, child_info in found:
            child_name = f"{arcname}/{child.name}"
            if stat.S_ISDIR(child_info.st_mode):
                below.append((child.path, child_name, child_info))
            elif stat.S_ISREG(child_info.st_mode) or stat.S_ISLNK(child_info.st_mode):
                tree.entries.append(_entry(child.path, child_name, child_info))
            else:
                tree.skipped.append(f"{child.path}: {describe(child_info.st_mode)}, skipped")
        folders.extend(reversed(below))
    return tree


def _entry(path: str, name: str, info: os.stat_result) -> Entry:
    mode, mtime = stat.S_IMODE(info.st_mode), info.st_mtime
    if stat.S_ISDIR(info.st_mode):
        return Entry(path, name, "dir", mode, mtime)
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.readlink(path)
        except OSError as exc:
            raise local_error(exc, path) from exc
        return Entry(path, name, "link", mode, mtime, target=target)
    if not os.access(path, os.R_OK):
        raise local_error(PermissionError(13, os.strerror(13)), path)
    return Entry(path, name, "file", mode, mtime, size=info.st_size)


async def tar_stream(
    tree: Tree, on_sent: Callable[[int], None] | None = None
) -> AsyncGenerator[bytes, None]:
    """The archive of `tree`, its files read in chunks as the stream is consumed; `on_sent(n)`
    is told each time `n` more bytes of file content went out."""
    for entry in tree.entries:
        if entry.kind == "dir":
            yield dir_header(entry.name, mode=entry.mode, mtime=entry.mtime)
        elif entry.kind == "link":
            yield symlink_header(entry.name, entry.target, mtime=entry.mtime)
        else:
            async for chunk in _file_member(entry, on_sent):
                yield chunk
    yield END


async def _file_member(entry: Entry, on_sent: Callable[[int], None] | None) -> AsyncIterator[bytes]:
    fd = await anyio.to_thread.run_sync(_open_regular, entry.path)
    try:
        yield file_header(entry.name, entry.size, mode=entry.mode, mtime=entry.mtime)
        sent = 0
        while sent < entry.size:
            try:
                chunk = await anyio.to_thread.run_sync(
                    os.read, fd, min(READ_CHUNK, entry.size - sent)
                )
            except OSError as exc:
                raise local_error(exc, entry.path) from exc
            if not chunk:
                raise BadRequest(f"{entry.path} shrank while it was being uploaded")
            sent += len(chunk)
            yield chunk
            if on_sent is not None:
                on_sent(len(chunk))
        yield padding(entry.size)
    finally:
        os.close(fd)


def _open_regular(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise local_error(exc, path) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BadRequest(f"{path} became {describe(mode)} while it was being uploaded")
    return fd


__all__ = ["Entry", "Tree", "describe", "local_error", "tar_stream", "walk"]
