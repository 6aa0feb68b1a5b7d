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

from collections import deque
from typing import Protocol

from rock_core.protocol import EndsReply, ReadEnds, SandboxChanged, SandboxEnd
from rock_core.serving import Connection

from ._labels import split_owner_key

KEEP = 1000


class EndsLog:
    """The latest ends, each with the owner key of its sandbox."""

    def __init__(self, keep: int = KEEP) -> None:
        self._ends: deque[tuple[int, SandboxEnd]] = deque(maxlen=keep)

    def add(self, owner_key: str, change: SandboxChanged) -> None:
        """Keep `change` if it is an end (a start is not)."""
        if change.state == "running":
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


class _WithEnds(Protocol):
    ends: EndsLog


async def read_ends(server: _WithEnds, conn: Connection, request: ReadEnds) -> EndsReply:
    """Handle `ReadEnds`: what the server's log holds for this connection."""
    return server.ends.read(conn, request)


__all__ = ["KEEP", "EndsLog", "read_ends"]
