"""`Sandbox.read_file`, `read_text`, `write_file` and `write_text`: whole small files (these
functions are the methods: `Sandbox` binds them; large files and folders are `_transfer`'s).

Rules:
- A file read or written whole is at most `MAX_DATA` (15 MiB), said before anything is sent;
  larger ones go through `upload`/`download`, streamed.
- Text is checked and coded here, in one place: a bad encoding or text that cannot be coded is
  a `BadRequest`.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from rock_core import BadRequest
from rock_core.protocol import MAX_DATA, Done, FileReply, ReadFile, Reply, Request, WriteFile

from . import _arguments as args

R = TypeVar("R", bound=Reply)


class _Sandbox(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    async def _call(self, request: Request, expect: type[R]) -> R: ...


async def read_file(self: _Sandbox, path: str) -> bytes:
    """The exact bytes of a file of at most 15 MiB (larger ones: `download`); a missing file
    raises `FileNotFound`."""
    reply = await self._call(ReadFile(sandbox_id=self.sandbox_id, path=path), FileReply)
    return reply.data


async def read_text(self: _Sandbox, path: str, encoding: str = "utf-8") -> str:
    """A file's text; `BadRequest` if it is not text in `encoding`."""
    codec = args.encoding(encoding)
    return args.decode(await read_file(self, path), codec, f"file {path}")


async def write_file(self: _Sandbox, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
    """Write a whole file (at most 15 MiB), creating its parent folders."""
    payload = args.data(data)
    if len(payload) > MAX_DATA:
        raise BadRequest(
            f"write_file takes at most {MAX_DATA >> 20} MiB ({len(payload)} bytes given);"
            " use upload() for larger files"
        )
    request = WriteFile(sandbox_id=self.sandbox_id, path=path, data=payload, mode=mode)
    await self._call(request, Done)


async def write_text(self: _Sandbox, path: str, text: str, encoding: str = "utf-8") -> None:
    """Write a file's text."""
    codec = args.encoding(encoding)
    try:
        payload = args.text(text, "text").encode(codec)
    except UnicodeEncodeError as exc:
        raise BadRequest(f"text cannot be written as {codec}: {exc}") from None
    await write_file(self, path, payload)


__all__ = ["read_file", "read_text", "write_file", "write_text"]
