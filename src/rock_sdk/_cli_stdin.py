"""Our stdin as chunks that come as they arrive: typed lines, a pipe's writes, a file's blocks.

Rules:
- A pipe, a socket or a terminal is waited on by the event loop (`anyio.wait_readable`) and
  read with one `os.read` of what is there, so each chunk goes on at once, a reader that is
  cancelled (the command ended first) leaves no thread behind, and the descriptor's flags are
  never changed (a terminal is shared with the shell).
- Anything else (a regular file, /dev/null, a stream with no descriptor such as a test's) is
  read in a worker thread: such reads never wait for a writer.
- Nothing is read before the command asks for it, and at most `CHUNK` bytes at a time: memory
  stays bounded whatever the size of the input. A chunk waiting to be sent may take what
  arrived meanwhile (`Stdin.ready`), never waiting for more.
"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio

CHUNK = 256 << 10  # the most bytes read at once (one `StreamData` chunk)


class Stdin:
    """A byte stream read in chunks, as they arrive (see the module's rules)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._fd = _pollable_fd(stream)
        self._ended = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Chunks of at most `CHUNK` bytes, until end of file."""
        fd = self._fd
        if fd is not None:
            while not self._ended:
                await anyio.wait_readable(fd)
                data = os.read(fd, CHUNK)
                if not data:
                    return
                yield data
        else:
            stream = self._stream
            read = stream.read1 if isinstance(stream, io.BufferedIOBase) else stream.read
            while data := await anyio.to_thread.run_sync(read, CHUNK, abandon_on_cancel=True):
                yield data

    def ready(self, limit: int) -> bytes:
        """Up to `limit` more bytes that have arrived, without waiting (from a pipe, socket or
        terminal; else nothing): a chunk that waited for credit takes what came meanwhile,
        so a writer of small pieces does not cost a message each."""
        fd, data = self._fd, b""
        while fd is not None and len(data) < limit and select.select([fd], [], [], 0)[0]:
            more = os.read(fd, limit - len(data))
            if not more:
                self._ended = True
                break
            data += more
        return data


def read_stdin() -> Stdin | None:
    """Our stdin to forward as the command reads it; None when the process has none."""
    if sys.stdin is None:
        return None
    return Stdin(sys.stdin.buffer)


def _pollable_fd(stream: BinaryIO) -> int | None:
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return fd
    return None


__all__ = ["CHUNK", "Stdin", "read_stdin"]
