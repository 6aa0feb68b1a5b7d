"""The fake agent's pause and resume (`FakeAgent` serves them with these).

Rules (those of `_messages_pause`): a running sandbox's state becomes "paused" and back;
pausing a paused one or resuming a running one changes nothing; one that does not run is a
`BadRequest` naming it and its state. No change is pushed: a pause is not a change of the
sandbox's lifecycle (see docs/pause.md).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._endpoint import Connection
from ._errors import BadRequest
from ._messages import Reply, SandboxReply
from ._messages_pause import PauseSandbox, ResumeSandbox


def _set(agent: Any, conn: Connection, request: PauseSandbox | ResumeSandbox, to: str) -> Reply:
    sandbox = agent._sandbox(request.sandbox_id, conn.principal)
    info = sandbox.info
    if info.state not in ("running", "paused"):
        raise BadRequest(
            f"sandbox {request.sandbox_id} is not running ({info.state}); "
            + ("start it first" if to == "paused" else "nothing to resume"),
            sandbox_id=request.sandbox_id,
        )
    info.state = to
    copy = msgspec.structs.replace(info, labels=dict(info.labels), sessions=list(info.sessions))
    return SandboxReply(id=request.id, sandbox=copy)


async def pause(agent: Any, conn: Connection, request: PauseSandbox) -> Reply:
    """Handler of `PauseSandbox`."""
    return _set(agent, conn, request, "paused")


async def resume(agent: Any, conn: Connection, request: ResumeSandbox) -> Reply:
    """Handler of `ResumeSandbox`."""
    return _set(agent, conn, request, "running")


__all__ = ["pause", "resume"]
