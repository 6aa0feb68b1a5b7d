"""The agent's short log of the latest sandbox ends it reported, read by `ReadEnds`.

Rules:
- Every change the agent pushes to an owner that is an end (a stop or a removal) is kept here
  as a `SandboxEnd`, whether or not a connection of that owner heard it; the latest `KEEP`
  only, oldest first. Memory only: a restarted agent starts an empty log (ends that happened
  while no agent ran are found by reconcile, as stopped containers with their exit code).
- A connection reads what it may see (`Principal.may_act_on`): its owner's ends, or for an
  administrator its user's (root's: every user's).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from rock_core.protocol import EndsReply, ReadEnds, SandboxChanged, SandboxEnd
from rock_core.serving import Connection

from ._labels import split_owner_key

KEEP = 1000
SAME_REMOVAL = 60.0  # seconds within which two removals of one sandbox id are one removal


class EndsLog:
    """The latest ends, each with the owner key of its sandbox."""

    def __init__(self, keep: int = KEEP) -> None:
        self._ends: deque[tuple[int, SandboxEnd]] = deque(maxlen=keep)

    def add(self, owner_key: str, change: SandboxChanged) -> None:
        """Keep `change` if it is an end (a start is not), once: a removal told by the
        engine's event and by its remover (`removed`) is kept the first time (a sandbox id
        made again later is another sandbox: `SAME_REMOVAL`)."""
        if change.state == "running":
            return
        if change.state == "deleted" and any(
            end.sandbox_id == change.sandbox_id
            and end.state == "deleted"
            and abs(change.at - end.at) < SAME_REMOVAL
            for _, end in self._ends
        ):
            return
        uid, owner = split_owner_key(owner_key)
        end = SandboxEnd(
            sandbox_id=change.sandbox_id,
            owner=owner,
            state=change.state,
            end=change.end,
            exit_code=change.exit_code,
            reason=change.reason,
            at=change.at,
        )
        self._ends.append((uid, end))

    def removed(self, owner_key: str, sandbox_id: str, end: str) -> None:
        """This agent removed an owner's sandbox on its own (`owner_gone`, `lease_expired`):
        its deadline keeper forgot it first, so no engine event will say why."""
        change = SandboxChanged(
            sandbox_id=sandbox_id,
            state="deleted",
            cause=end,
            reason=removal_reason(end),
            at=time.time(),
            end=end,
        )
        self.add(owner_key, change)

    def read(self, conn: Connection, request: ReadEnds) -> EndsReply:
        """What `conn` may see of the log, narrowed by the request."""
        who = conn.principal
        ends = [
            end
            for uid, end in self._ends
            if who.may_act_on(uid, end.owner)
            and end.at > request.since
            and (not request.of or end.sandbox_id == request.of)
        ]
        return EndsReply(id=request.id, ends=ends)


def removal_reason(end: str) -> str:
    """The words of a removal this agent made on its own, for `end`."""
    why = "its owner's lease expired" if end == "lease_expired" else "its owner is gone"
    return f"removed: {why}"


class _WithEnds(Protocol):
    ends: EndsLog


async def read_ends(server: _WithEnds, conn: Connection, request: ReadEnds) -> EndsReply:
    """Handle `ReadEnds`: what the server's log holds for this connection."""
    return server.ends.read(conn, request)


__all__ = ["KEEP", "EndsLog", "read_ends", "removal_reason"]
