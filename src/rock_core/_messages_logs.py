"""Messages of a sandbox's logs: what its container's main process wrote to stdout and stderr.

Rules:
- Built on the base messages of `_messages` (same tag field, same request ids); joined into the
  unions in `_protocol`.
- `ReadLogs` streams the output back as `LogData` events, each tagged with its stream, under
  the caller's `StreamCredit` (one credit per event, as a `Download`'s `StreamData`), then one
  `Done`. With `follow` it goes on until the container stops or the caller cancels.
- An agent announces the family as the capability "logs"; a client checks it before sending
  (`AgentConnection.require`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._messages import Message, Request
from ._schema import RequestId, SandboxId

LATEST = 1e11  # a unix time no log line has

#: Lines from the end of the log; None: all of it.
TailLines = Annotated[int, msgspec.Meta(ge=0, le=(1 << 31) - 1)]
#: A unix time in seconds from which on the log is read; 0: from its start. Later than
#: `LATEST` (the year 5138) is read as `LATEST`: nothing is that new.
SinceTime = Annotated[float, msgspec.Meta(ge=0, le=LATEST)]
#: The most bytes one `LogData` carries.
LOG_CHUNK = 256 << 10


class ReadLogs(Request, tag="logs"):
    """Stream what the sandbox's main process wrote (stdout and stderr, in order): the last
    `tail` lines (None: all) written at or after `since`; with `timestamps` each line starts
    with the time it was written (RFC 3339, then a space); with `follow`, then what it writes
    next until the sandbox stops."""

    sandbox_id: SandboxId
    follow: bool = False
    tail: TailLines | None = None
    since: SinceTime = 0.0
    timestamps: bool = False


class LogData(Message, tag="log_data"):
    """Event of a `ReadLogs`: a piece of the log, from one stream, exact bytes."""

    id: RequestId
    stream: Literal["stdout", "stderr"]
    data: Annotated[bytes, msgspec.Meta(max_length=LOG_CHUNK)]


__all__ = ["LATEST", "LOG_CHUNK", "LogData", "ReadLogs", "SinceTime", "TailLines"]
