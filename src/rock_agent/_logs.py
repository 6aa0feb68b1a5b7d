"""Handler of `ReadLogs`: a sandbox's log (its main process's stdout and stderr), streamed.

Rules:
- The log leaves as `LogData` events, each tagged with its stream, at most `LOG_CHUNK` bytes,
  one per credit the caller granted (as a download's chunks leave), so a long log or a fast
  writer is paced by the caller; then `Done`.
- With `follow` the request lasts until the sandbox stops (the runtime's log ends) or the
  caller cancels it; the runtime's stream is closed on every exit.
- Reading another owner's log (an administrator's `rock logs`) is a look, not a use: it does
  not keep the sandbox from its idle timeout (`_expiry.LOOKS`); the owner's own read is a use.
  Either way it does not resume a paused sandbox (`_pause.QUIET`).
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from rock_core.protocol import LOG_CHUNK, Done, LogData, ReadLogs, Reply
from rock_core.serving import Connection

from ._runtime import ContainerRuntime


class _Server(Protocol):
    runtime: ContainerRuntime


async def read_logs(server: _Server, conn: Connection, req: ReadLogs) -> Reply:
    """Send the sandbox's log under the caller's credit, then `Done`."""
    gate = conn.gate(req.id)
    logs = server.runtime.logs(
        req.sandbox_id,
        follow=req.follow,
        tail=req.tail,
        since=req.since,
        timestamps=req.timestamps,
    )
    async with contextlib.aclosing(logs) as chunks:
        async for chunk in chunks:
            for at in range(0, len(chunk.data), LOG_CHUNK):
                await gate.take()
                piece = chunk.data[at : at + LOG_CHUNK]
                await conn.send(LogData(id=req.id, stream=chunk.stream, data=piece))
    return Done(id=req.id)


__all__ = ["read_logs"]
