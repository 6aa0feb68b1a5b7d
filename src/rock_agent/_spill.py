"""A command's output: the first `limit` bytes in memory, all of it in a file in the sandbox.

Rules:
- The agent host holds at most `limit` bytes of a command's output, plus one chunk in flight.
  When the output first passes the limit, one process is started in the sandbox
  (`mkdir -p DIR && cat > FILE`) and everything so far, then every later chunk, is written to
  its input as it arrives. A write waits until the engine has taken the bytes, so a flood
  is paced by the sandbox's disk, not buffered by the agent.
- A streamed command (`on_output`) has each chunk sent as it comes, so its reply carries no
  output: the host then holds at most `STREAMED_HELD` bytes of it, and output past that is
  written to the file from the start (the file may then be named though `truncated` is not).
- The file is named in the result only if it holds the whole output: a spill that fails (a
  full disk, a dead sandbox) is logged, the rest of the output is dropped, and `output_path`
  stays empty.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from rock_core._errors import RockError, SandboxFailed

from . import _procs
from ._runtime import ContainerRuntime, Process

log = logging.getLogger(__name__)

OUTPUT_DIR = "/tmp/.rock/output"
STREAMED_HELD = 1 << 20  # bytes of a streamed command's output held on the host

OnOutput = Callable[[bytes], Awaitable[None]]


class SpillFile(Protocol):
    """A file being written in the sandbox."""

    async def write(self, data: bytes) -> None:
        """Append `data`; returns once the engine has taken it."""

    async def finish(self) -> bool:
        """End the file; True if every byte reached it."""

    async def abort(self) -> None:
        """Give up on the file (the process is ended; the file may stay, partial)."""


OpenSpill = Callable[[str], Awaitable[SpillFile]]


class Output:
    """Collects one command's output; see the module rules."""

    def __init__(
        self, limit: int, on_output: OnOutput | None, open_spill: OpenSpill | None, path: str
    ) -> None:
        self.limit = max(0, limit)
        self.head = bytearray()
        self.total = 0
        self.path = path
        self._on_output = on_output
        self._open_spill = open_spill
        self._spill: SpillFile | None = None
        self._spill_failed = False
        self._held_full = False  # a streamed command's held output reached `STREAMED_HELD`

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    async def add(self, data: bytes) -> None:
        if not data:
            return
        room = self.limit - self.total
        kept = data[:room] if room > 0 else b""
        self.total += len(data)
        if kept:
            streamed = self._on_output is not None
            if not streamed or (
                not self._held_full and len(self.head) + len(kept) <= STREAMED_HELD
            ):
                self.head += kept
            elif not self._held_full:
                self._held_full = True
                await self._start_spill(bytes(self.head))  # from now on all of it is in the file
            if self._on_output is not None:
                await self._on_output(kept)
        if (self.total <= self.limit and self._spill is None) or self._spill_failed:
            return
        if self._spill is None:
            await self._start_spill(bytes(self.head) + data[len(kept) :])
        else:
            await self._write(data)

    async def _start_spill(self, first: bytes) -> None:
        if self._open_spill is None:
            self._spill_failed = True
            return
        try:
            self._spill = await self._open_spill(self.path)
        except RockError as exc:
            log.warning("cannot keep the full output in %s: %s", self.path, exc)
            self._spill_failed = True
            return
        await self._write(first)

    async def _write(self, data: bytes) -> None:
        assert self._spill is not None
        try:
            await self._spill.write(data)
        except RockError as exc:
            log.warning("the full output in %s is incomplete: %s", self.path, exc)
            self._spill_failed = True
            await self._spill.abort()

    async def finish(self) -> str:
        """End the spill file; its path if it holds the whole output, else ""."""
        spill, self._spill = self._spill, None
        if spill is None or self._spill_failed:
            return ""
        try:
            complete = await spill.finish()
        except RockError as exc:
            log.warning("the full output in %s may be incomplete: %s", self.path, exc)
            complete = False
        return self.path if complete else ""

    async def abort(self) -> None:
        """Drop the spill (on cancellation or an error)."""
        spill, self._spill = self._spill, None
        if spill is not None:
            await spill.abort()


class _ExecSpill:
    """A spill file written by `cat` in the sandbox, fed through one engine exec."""

    def __init__(self, process: Process) -> None:
        self._process = process

    async def write(self, data: bytes) -> None:
        try:
            await self._process.write(data)  # waits for the transport to drain
        except Exception as exc:  # aiohttp/engine errors: the writer is gone
            raise SandboxFailed(f"the process writing the output file is gone: {exc}") from exc

    async def finish(self) -> bool:
        process = self._process
        await process.close_input()
        errors = bytearray()
        try:
            with anyio.move_on_after(FINISH_TIMEOUT):
                while (chunk := await process.read()) is not None:
                    errors += chunk.data[:4096]
        except Exception as exc:
            raise SandboxFailed(f"reading the output file's writer: {exc}") from exc
        finally:
            with anyio.CancelScope(shield=True):
                await process.aclose()
        code = await process.wait()
        if code != 0:
            text = bytes(errors).decode(errors="replace").strip()
            log.warning("the output file's writer exited %s: %s", code, text)
        return code == 0

    async def abort(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                state = await self._process.state()
                if state.running:
                    _procs.kill_tree(state.pid, include_root=True)
            except RockError:
                pass
            await self._process.aclose()


FINISH_TIMEOUT = 60.0  # seconds for `cat` to write out what it was given


def exec_spill(runtime: ContainerRuntime, sandbox_id: str) -> OpenSpill:
    """Spill files of one sandbox, each written by a `cat` started in it."""

    async def open_spill(path: str) -> SpillFile:
        folder = path.rsplit("/", 1)[0] or "/"
        script = f"mkdir -p {shlex.quote(folder)} && exec cat > {shlex.quote(path)}"
        return _ExecSpill(await runtime.exec(sandbox_id, ["/bin/sh", "-c", script]))

    return open_spill


__all__ = ["OUTPUT_DIR", "OnOutput", "OpenSpill", "Output", "SpillFile", "exec_spill"]
