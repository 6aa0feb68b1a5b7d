"""A fake sandbox's log: what its main process wrote to its stdout and stderr, as the engine
keeps a container's log.

Rules:
- The main process writes into pipes the log holds (`open`); what they hold is taken when
  someone looks (`drain`: before every read of the log, and when the main process ends), so
  nothing runs in the background. A writer that fills a pipe (64 KiB) between two looks
  waits until the next one.
- The log is kept as lines, each with its stream and the time it was taken, as the engine
  keeps them: a line without its newline waits for the rest until its pipe closes. Lines are
  read out joined while they come from one stream. At most
  `LOG_CAP` bytes are kept; the oldest lines go first. The log outlives a stop, and a start
  appends to it.
- Reading follows `ReadLogs`: lines at or after `since`, the last `tail` of them, each with
  its time first if `timestamps`; with `follow`, then new lines (looked for every `POLL`
  seconds) until the main process stops.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import NamedTuple, Protocol

import anyio

from ._runtime import OutputChunk, OutputStream

LOG_CAP = 1 << 20  # bytes of log kept per sandbox
POLL = 0.05  # seconds between looks at the pipes of a followed log
_READ = 1 << 16


class LogLine(NamedTuple):
    """One line of the log (the last may lack its newline), numbered from the first."""

    number: int
    at: float
    stream: OutputStream
    data: bytes


class ContainerLog:
    """The log of one fake sandbox (see the rules)."""

    def __init__(self, cap: int = LOG_CAP) -> None:
        self.cap = cap
        self.lines: deque[LogLine] = deque()
        self.size = 0
        self.run = 0  # how many times the main process started: a follower ends with its run
        self._count = 0
        self._pipes: dict[OutputStream, int] = {}
        self._partial: dict[OutputStream, bytes] = {}

    def open(self) -> tuple[int, int]:
        """New pipes for a main process that starts: their write ends (its stdout and stderr),
        which the caller closes once the process has them."""
        self.close()
        self.run += 1
        ends = []
        for stream in ("stdout", "stderr"):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self._pipes[stream] = read_end
            ends.append(write_end)
        return ends[0], ends[1]

    @property
    def open_now(self) -> bool:
        """True while a main process may still write."""
        return bool(self._pipes)

    def drain(self) -> None:
        """Take what the pipes hold now; a pipe at its end is closed."""
        for stream, fd in list(self._pipes.items()):
            while True:
                try:
                    data = os.read(fd, _READ)
                except BlockingIOError:
                    break
                if not data:
                    self._close_pipe(stream)
                    break
                self._take(stream, data)

    def close(self) -> None:
        """The main process has ended: take the rest and close the pipes."""
        self.drain()
        for stream in list(self._pipes):
            self._close_pipe(stream)

    def _close_pipe(self, stream: OutputStream) -> None:
        os.close(self._pipes.pop(stream))
        rest = self._partial.pop(stream, b"")
        if rest:
            self._add(stream, rest)

    def _take(self, stream: OutputStream, data: bytes) -> None:
        pieces = (self._partial.pop(stream, b"") + data).split(b"\n")
        for piece in pieces[:-1]:
            self._add(stream, piece + b"\n")
        if pieces[-1]:
            self._partial[stream] = pieces[-1]

    def _add(self, stream: OutputStream, data: bytes) -> None:
        self._count += 1
        self.lines.append(LogLine(self._count, time.time(), stream, data))
        self.size += len(data)
        while self.size > self.cap and self.lines:
            self.size -= len(self.lines.popleft().data)

    async def read(
        self, *, follow: bool, tail: int | None, since: float, timestamps: bool
    ) -> AsyncGenerator[OutputChunk, None]:
        """The log as `ReadLogs` asks for it (see the rules)."""
        self.drain()
        picked = [line for line in self.lines if line.at >= since]
        if tail is not None:
            picked = picked[len(picked) - tail :] if tail else []
        seen = self._count
        for chunk in _chunks(picked, timestamps):
            yield chunk
        run = self.run
        while follow and self.open_now and self.run == run:
            await anyio.sleep(POLL)
            if self.run == run:
                self.drain()
            new = [line for line in self.lines if line.number > seen]
            seen = new[-1].number if new else seen
            for chunk in _chunks(new, timestamps):
                yield chunk


class _HasLog(Protocol):
    log: ContainerLog


async def read_log(
    find: Callable[[str], Awaitable[_HasLog]],
    sandbox_id: str,
    *,
    follow: bool,
    tail: int | None,
    since: float,
    timestamps: bool,
) -> AsyncGenerator[OutputChunk, None]:
    """The log of sandbox `sandbox_id`, found with `find` at the first read (so its errors,
    `SandboxNotFound`, come then)."""
    box = await find(sandbox_id)
    chunks = box.log.read(follow=follow, tail=tail, since=since, timestamps=timestamps)
    async with contextlib.aclosing(chunks) as pieces:
        async for chunk in pieces:
            yield chunk


def _chunks(lines: list[LogLine], timestamps: bool) -> list[OutputChunk]:
    """Lines as chunks, adjacent lines of one stream joined (as the engine's reads join them)."""
    chunks: list[OutputChunk] = []
    for line in lines:
        data = f"{rfc3339(line.at)} ".encode() + line.data if timestamps else line.data
        if chunks and chunks[-1].stream == line.stream:
            chunks[-1] = OutputChunk(line.stream, chunks[-1].data + data)
        else:
            chunks.append(OutputChunk(line.stream, data))
    return chunks


def rfc3339(at: float) -> str:
    """A unix time as the engine stamps log lines: UTC, nanoseconds (2024-05-01T12:00:00.5Z)."""
    whole = int(at)
    stamp = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{min(999_999_999, round((at - whole) * 1e9)):09d}Z"


__all__ = ["LOG_CAP", "POLL", "ContainerLog", "LogLine", "read_log", "rfc3339"]
