"""A sandbox's log, caller side: what its container's main process wrote, streamed in chunks.

`read_logs` reads it over one agent link (a `Sandbox` uses its own); `sandbox_logs` finds the
sandbox on any host of a cluster first, whoever owns it (the command line's way, as
`locate_sandbox`). See `rock_agent._logs` for the agent's half.

Rules:
- Arguments are checked before anything is sent: `tail` a whole number of lines >= 0 (None:
  all), `since` a unix time in seconds >= 0 or an aware `datetime` (None: from the start; a
  time in the future reads nothing), booleans for `follow` and `timestamps`. Anything else is
  a `BadRequest` naming the argument.
- An agent that does not announce the capability "logs" is refused with `BadRequest` before
  the request is sent.
- Chunks come in order, each of one stream with its exact bytes, under credit: the agent
  sends the next only as the reader takes them, so a slow reader paces a fast writer.
- Leaving the iteration early (a `break`, a cancel) cancels the request on the agent.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncGenerator, Mapping
from typing import Literal

import msgspec

from ._channel import WINDOW
from ._connection import AgentConnection, raise_for_reply
from ._errors import BadRequest
from ._messages_logs import LATEST
from ._ports import HostLink, locate_sandbox
from ._protocol import Done, LogData, ReadLogs, Reply


class LogChunk(msgspec.Struct, frozen=True):
    """A piece of a sandbox's log: the stream it was written to and its exact bytes."""

    stream: Literal["stdout", "stderr"]
    data: bytes


def logs_request(
    sandbox_id: str,
    *,
    follow: object = False,
    tail: object = None,
    since: object = None,
    timestamps: object = False,
) -> ReadLogs:
    """The `ReadLogs` for these arguments, checked (see the rules)."""
    if not isinstance(follow, bool):
        raise BadRequest(f"logs: follow must be True or False, not {follow!r}")
    if not isinstance(timestamps, bool):
        raise BadRequest(f"logs: timestamps must be True or False, not {timestamps!r}")
    if tail is not None and (type(tail) is not int or tail < 0):
        raise BadRequest(f"logs: tail must be a whole number of lines >= 0 or None, not {tail!r}")
    start = 0.0
    if isinstance(since, datetime.datetime):
        if since.tzinfo is None:
            raise BadRequest("logs: since must be an aware datetime (with its time zone)")
        start = since.timestamp()
    elif since is not None:
        if (
            isinstance(since, bool)
            or not isinstance(since, int | float)
            or not math.isfinite(since)
        ):
            raise BadRequest(
                f"logs: since must be a unix time in seconds or a datetime, not {since!r}"
            )
        if since < 0:
            raise BadRequest(f"logs: since must be a unix time >= 0, not {since!r}")
        start = float(since)
    return ReadLogs(
        sandbox_id=sandbox_id,
        follow=follow,
        tail=tail,
        since=min(max(0.0, start), LATEST),
        timestamps=timestamps,
    )


async def read_logs(
    conn: AgentConnection,
    sandbox_id: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: float | datetime.datetime | None = None,
    timestamps: bool = False,
) -> AsyncGenerator[LogChunk, None]:
    """The log of sandbox `sandbox_id` on the agent of `conn`: its last `tail` lines (None:
    all) written at or after `since`, each line starting with its time (RFC 3339) if
    `timestamps`; with `follow`, then what it writes next, until the sandbox stops.

    `SandboxNotFound` if the agent holds no such sandbox (for this connection's owner).
    """
    request = logs_request(sandbox_id, follow=follow, tail=tail, since=since, timestamps=timestamps)
    conn.require("logs", "read a sandbox's logs")
    async with conn.open_request(request) as answers:
        await conn.grant(request.id, WINDOW)
        async for message in answers:
            if isinstance(message, LogData):
                yield LogChunk(message.stream, message.data)
                await conn.grant(request.id, 1)
            elif isinstance(message, Reply):
                raise_for_reply(message, Done, request)


async def sandbox_logs(
    hosts: Mapping[str, HostLink],
    sandbox_id: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: float | datetime.datetime | None = None,
    timestamps: bool = False,
) -> AsyncGenerator[LogChunk, None]:
    """`read_logs` of sandbox `sandbox_id` on whichever of `hosts` holds it, whoever owns it
    (`locate_sandbox`; an administrator's cluster sees every owner's)."""
    logs_request(sandbox_id, follow=follow, tail=tail, since=since, timestamps=timestamps)
    conn, _ = await locate_sandbox(hosts, sandbox_id)
    chunks = read_logs(
        conn, sandbox_id, follow=follow, tail=tail, since=since, timestamps=timestamps
    )
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()


__all__ = ["LogChunk", "logs_request", "read_logs", "sandbox_logs"]
