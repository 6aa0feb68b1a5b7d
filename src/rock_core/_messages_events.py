"""Messages of sandbox ends: the agent's log of the latest ends it saw (capability "end-reasons").

Rules:
- Built on the base messages of `_messages`. Why one sandbox ended reaches its owner's core
  unasked (`SandboxChanged.end`, `exit_code`); `ReadEnds` reads the agent's short log of the
  latest ends it reported (`EndsReply`), for a program that owns none of them (`rock events`,
  `rock status`): an administrator's connection sees its user's (root's: everyone's), an
  owner's connection its own.
- The log is the agent process's memory: bounded (the oldest go first), empty after the agent
  restarts. `since` (unix time) and `of` (a sandbox id) narrow what is read.
- An agent that serves `ReadEnds` announces "end-reasons"; a client checks it before sending.
- A new request kind here is added to the unions in `_protocol` too.
"""

from __future__ import annotations

import msgspec

from ._messages import Reply, Request

CAPABILITY = "end-reasons"


class ReadEnds(Request, tag="read_ends"):
    """The latest ends this connection may see, oldest first, after `since` (unix time);
    only sandbox `of`'s if given (not named `sandbox_id`: it reads a log, not a sandbox)."""

    since: float = 0.0
    of: str = ""


class SandboxEnd(msgspec.Struct, kw_only=True, frozen=True):
    """One end an agent reported: which sandbox (and owner), its state after ("stopped" or
    "deleted"), the `EndReason` value ("" when it kept an earlier end: an auto-delete), its
    init's exit code, the reason in words and the unix time."""

    sandbox_id: str
    owner: str
    state: str
    end: str
    exit_code: int | None = None
    reason: str = ""
    at: float = 0.0


class EndsReply(Reply, tag="ends"):
    """Answer to `ReadEnds`."""

    ends: list[SandboxEnd]


__all__ = ["CAPABILITY", "EndsReply", "ReadEnds", "SandboxEnd"]
