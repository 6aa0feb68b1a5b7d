"""The file system of a fake sandbox: a folder on this host, read and written as tar streams.

Rules:
- A sandbox path maps under the sandbox's root folder (`host_path`): `/etc/x` of sandbox `s`
  is `<root of s>/etc/x`. `..` never leaves the root, and a symlink inside the root that points
  out of it is refused rather than followed (`FileNotFound`, as for a path that is not there).
- Archives are real tar streams (`tarfile`), shaped as the engine's archive API shapes them:
  reading `path` gives one top member named after its last component (a folder with all of
  its content, a symlink as a link); writing unpacks a stream into folder `path`, which must
  exist (`FileNotFound`), and a member that would land outside the root is `BadRequest`.
- Tar work is blocking, so it runs in a worker thread; streams are spooled in a temporary
  file, never held whole in memory.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import IO

import anyio

from rock_core import BadRequest, FileNotFound

CHUNK = 256 << 10  # bytes per chunk of an archive read, as the engine's reader sends them
SPOOL = 1 << 20  # bytes of an archive kept in memory before it spills to a temporary file


def host_path(root: Path, path: str) -> Path:
    """Where sandbox path `path` lives on this host, under `root` (see the rules)."""
    clean = posixpath.normpath("/" + path).lstrip("/")
    return root / clean if clean and clean != "." else root


def _inside(root: Path, target: Path) -> bool:
    """Whether `target`, its symlinks followed, is `root` or under it."""
    real = Path(os.path.realpath(target))
    return real == Path(os.path.realpath(root)) or real.is_relative_to(os.path.realpath(root))


async def read_archive(root: Path, sandbox_id: str, path: str) -> AsyncGenerator[bytes, None]:
    """`path` of the sandbox as a tar stream (`FileNotFound` if nothing is there)."""
    spool = await anyio.to_thread.run_sync(_pack, root, sandbox_id, path)
    try:
        while chunk := await anyio.to_thread.run_sync(spool.read, CHUNK):
            yield chunk
    finally:
        spool.close()


def _pack(root: Path, sandbox_id: str, path: str) -> IO[bytes]:
    target = host_path(root, path)
    missing = FileNotFound(f"{path}: no such file or folder in sandbox {sandbox_id}")
    if not _inside(root, target.parent) or not os.path.lexists(target):
        raise missing
    name = target.name if target != root else "."
    spool = tempfile.SpooledTemporaryFile(SPOOL)
    try:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as archive:
            archive.add(str(target), arcname=name, recursive=True)
    except OSError as exc:
        spool.close()
        raise FileNotFound(f"{path}: cannot be read in sandbox {sandbox_id}: {exc}") from exc
    spool.seek(0)
    return spool


async def write_archive(
    root: Path, sandbox_id: str, path: str, chunks: AsyncIterator[bytes]
) -> None:
    """Unpack a tar stream into folder `path` of the sandbox.

    An error raised by `chunks` (a refused upload) comes back as itself, and then nothing of
    the stream is unpacked.
    """
    folder = host_path(root, path)
    if not _inside(root, folder) or not folder.exists():
        raise FileNotFound(f"{path}: no such folder in sandbox {sandbox_id}")
    if not folder.is_dir():
        raise BadRequest(f"{path} is not a folder in sandbox {sandbox_id}: cannot unpack there")
    with tempfile.SpooledTemporaryFile(SPOOL) as spool:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(spool.write, chunk)
        spool.seek(0)
        await anyio.to_thread.run_sync(_unpack, spool, root, folder, sandbox_id, path)


def _unpack(spool: IO[bytes], root: Path, folder: Path, sandbox_id: str, path: str) -> None:
    try:
        with tarfile.open(fileobj=spool, mode="r:") as archive:
            for member in archive:
                target = folder / member.name.lstrip("/")
                if not _inside(root, target.parent) or ".." in Path(member.name).parts:
                    raise BadRequest(
                        f"{member.name}: the archive member would land outside sandbox {sandbox_id}"
                    )
                archive.extract(member, folder, set_attrs=True, filter="tar")
    except tarfile.TarError as exc:
        raise BadRequest(f"writing to {path} in sandbox {sandbox_id}: {exc}") from exc


__all__ = ["host_path", "read_archive", "write_archive"]
