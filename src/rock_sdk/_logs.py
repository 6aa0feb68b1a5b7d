"""`Sandbox.logs`: what the sandbox's container printed (this function is the method: `Sandbox`
binds it).

Rules:
- The log is read over the sandbox's own agent link, looked up through the cluster
  (``cluster.connection``) when the iteration starts, so it follows the sandbox's host across
  reconnects; the arguments are checked by `rock_core.read_logs`, in one place.
- A sandbox never started is a `BadRequest`, one that is gone a `SandboxNotFound`, both raised
  by the first step of the iteration.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncGenerator
from typing import Protocol

from rock_core import Cluster, LogChunk, read_logs


class _Started(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    @property
    def cluster(self) -> Cluster: ...


async def logs(
    sandbox: _Started,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: float | datetime.datetime | None = None,
    timestamps: bool = False,
) -> AsyncGenerator[LogChunk, None]:
    """The output of the sandbox's container (its main process), as `LogChunk`s in order, each
    of one stream (``chunk.stream``: "stdout" or "stderr") with its exact bytes (``chunk.data``).

    ``async for chunk in sb.logs(tail=10):`` reads the last 10 lines; `since` (a unix time, or
    an aware `datetime`) keeps those written from then on; `timestamps` starts each line with
    the time it was written (RFC 3339). With `follow`, the iteration goes on with what the
    container prints next, until it stops (or the caller leaves the loop). Programs started
    with `run` or `execute` print to their own output, not to the container's: a program
    writes to the log through the main process's ``/proc/1/fd/1`` and ``/proc/1/fd/2``.
    """
    conn = sandbox.cluster.connection(sandbox.sandbox_id)
    chunks = read_logs(
        conn, sandbox.sandbox_id, follow=follow, tail=tail, since=since, timestamps=timestamps
    )
    async with contextlib.aclosing(chunks) as pieces:
        async for chunk in pieces:
            yield chunk


__all__ = ["logs"]
