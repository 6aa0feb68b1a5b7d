"""Streamed one-off commands (`ExecuteStreamed`): stdin in, stdout and stderr out, as they come.

Rules:
- One engine exec per command, as `_execute` does; its stdin is fed from the client's
  `StreamData` under our credit (`WINDOW` chunks ahead, one more per chunk written), and
  closed at the stream's end, or at once when the request sends no stdin.
- Output goes out as `ProcessOutput` events, each taking one credit the client granted, so
  the agent holds at most one chunk of a command whose reader is slow.
- The command ending ends the request: input still arriving is dropped. A feeder that cannot
  write (the command closed its stdin, or never started) stops quietly: the output side sees
  the end and raises the start failure, if that was it, once.
- A timeout, or a request cancelled (the client left, Ctrl-C), kills the command's process
  tree; a timeout still answers, with what the result says (`timed_out`).
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from rock_core import RockError
from rock_core.protocol import (
    OUTPUT_CHUNK,
    ExecReply,
    ExecResult,
    ExecuteStreamed,
    ProcessOutput,
    Reply,
    StreamCredit,
)
from rock_core.serving import Connection

from . import _oom
from ._execute import find_oom_file, kill_tree
from ._files import until_end
from ._runtime import ContainerRuntime, Process

WINDOW = 8  # stdin chunks the client may send ahead of what the command took
KILL_BOUND = 10.0  # seconds a kill after a cancel may take


class _Server(Protocol):
    runtime: ContainerRuntime


async def execute_streamed(server: _Server, conn: Connection, req: ExecuteStreamed) -> Reply:
    """Handler of `ExecuteStreamed` (see the module's rules)."""
    runtime = server.runtime
    started = time.monotonic()
    oom_file = await find_oom_file(runtime, req.sandbox_id)
    oom_before = _oom.count(oom_file)
    inbound = conn.open_inbound(req.id, WINDOW) if req.stdin else None
    process = await runtime.exec(req.sandbox_id, req.argv, env=req.env, cwd=req.cwd, stdin=True)
    pump = _OutputPump(conn, req, process)
    ended = False
    failure: RockError | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_feed, conn, req.id, inbound, process)
            with anyio.move_on_after(req.timeout) as scope:
                try:
                    await pump.run()
                except RockError as exc:  # raised alone, not in the task group's exception group
                    failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if scope.cancelled_caught:
            await kill_tree(runtime, req.sandbox_id, process)
        ended = True
    finally:
        with anyio.CancelScope(shield=True):
            if not ended:
                with anyio.move_on_after(KILL_BOUND):
                    await _kill_quietly(runtime, req.sandbox_id, process)
            await process.aclose()
    exit_code = await process.wait()
    result = ExecResult(
        stdout=b"",
        stderr=b"",
        exit_code=exit_code,
        timed_out=scope.cancelled_caught,
        duration=time.monotonic() - started,
        oom_killed=_oom.grew(oom_file, oom_before),
        truncated=pump.truncated,
    )
    return ExecReply(id=req.id, result=result)


class _OutputPump:
    """Reads the command's output and sends it on, under the client's credit."""

    def __init__(self, conn: Connection, req: ExecuteStreamed, process: Process) -> None:
        self._conn = conn
        self._req = req
        self._process = process
        self._sent = {"stdout": 0, "stderr": 0}
        self.truncated = False

    async def run(self) -> None:
        """Until the command's output ends (it raises a start failure there)."""
        gate = self._conn.gate(self._req.id)
        limit = self._req.output_limit
        while (chunk := await self._process.read()) is not None:
            data = chunk.data
            if limit is not None:
                room = max(0, limit - self._sent[chunk.stream])
                self.truncated = self.truncated or len(data) > room
                data = data[:room]
            self._sent[chunk.stream] += len(data)
            for start in range(0, len(data), OUTPUT_CHUNK):
                await gate.take()
                piece = data[start : start + OUTPUT_CHUNK]
                await self._conn.send(
                    ProcessOutput(id=self._req.id, data=piece, stream=chunk.stream)
                )


async def _feed(
    conn: Connection,
    request_id: int,
    inbound: MemoryObjectReceiveStream[bytes | None] | None,
    process: Process,
) -> None:
    """Write the client's stream to the command's stdin, then close it."""
    if inbound is not None:
        try:
            await conn.send(StreamCredit(id=request_id, chunks=WINDOW))
            async for chunk in until_end(inbound):
                await process.write(chunk)
                await conn.send(StreamCredit(id=request_id, chunks=1))
        except RockError:
            return  # it stopped taking input (ended, closed it, never ran): the output tells
    await process.close_input()


async def _kill_quietly(runtime: ContainerRuntime, sandbox_id: str, process: Process) -> None:
    try:
        await kill_tree(runtime, sandbox_id, process)
    except RockError:
        pass  # it ended, or its sandbox went meanwhile: nothing left to kill


__all__ = ["WINDOW", "execute_streamed"]
