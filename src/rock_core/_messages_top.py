"""Messages of the live view (`rock top`): one host's whole view in one round trip, and what
each core tells its agents about the work it holds.

Rules:
- Built on the base messages of `_messages` (same tag field, same request ids); added to the
  unions in `_protocol`. The agent announces the family as the capability "top"; a client
  checks it before sending either request (`AgentConnection.require`).
- `ReadHostView` answers with what the agent knows for every owner (an administrator's
  connection and an owner's alike see the totals; the view is read-only): its resources, the
  reservations of every sandbox there, its starts in flight, each sandbox's info and latest
  live reading, and the latest `CoreReport` of each core connected to it.
- `CoreReport` is sent by a core when what it reports changed (at most about once a second,
  `rock_core._core_report`); the agent keeps the latest one per connection and forgets it when
  that connection ends. It is answered with `Done`. It changes nothing the agent decides.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ._messages import Reply, Request
from ._schema import ShortText
from ._values import SandboxInfo, SandboxStats

#: A count a core reports (queued creates, starts, pool members, hits).
Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]


class PoolView(msgspec.Struct, kw_only=True):
    """One warm pool of a core, as that core reported it (see `rock_core.PoolStatistics`)."""

    name: ShortText
    image: ShortText
    size: Count  # members it holds: ready + being created
    ready: Count
    target: Count
    handed_out: Count
    hits: Count
    misses: Count


class CoreReport(Request, tag="core_report"):
    """A core's work that only it knows: its queue and its pools (answered with `Done`).

    `queued` counts the creates waiting in the core's queue for room on any of its hosts;
    `starting` the core's creates in flight on the receiving host.
    """

    queued: Count = 0
    starting: Count = 0
    pools: Annotated[list[PoolView], msgspec.Meta(max_length=1024)] = msgspec.field(
        default_factory=list
    )


class CoreView(msgspec.Struct, kw_only=True):
    """The latest `CoreReport` of one connection, with who sent it and when (unix time)."""

    owner: str
    at: float
    queued: int = 0
    starting: int = 0
    pools: list[PoolView] = msgspec.field(default_factory=list)


class SandboxView(msgspec.Struct, kw_only=True):
    """One sandbox of a host view: its info (with deadlines) and its latest live reading
    (None while it is not running, or when no reading came in time)."""

    info: SandboxInfo
    stats: SandboxStats | None = None


class HostView(msgspec.Struct, kw_only=True):
    """What one agent knows, for every owner, at `time` (unix time).

    `cpus_reserved` / `memory_reserved` add up the specs of its running sandboxes (what the
    scheduler accounts); `starting` counts the creates it is carrying out now.
    """

    host_id: str
    time: float
    cpus: float
    memory: int
    cpus_reserved: float = 0.0
    memory_reserved: int = 0
    starting: int = 0
    sandboxes: list[SandboxView] = msgspec.field(default_factory=list)
    cores: list[CoreView] = msgspec.field(default_factory=list)


class ReadHostView(Request, tag="host_view"):
    """Report this host's view; with `stats`, each running sandbox's live reading too (about a
    second, read at once for all of them)."""

    stats: bool = True


class HostViewReply(Reply, tag="host_view_result"):
    """Answer to `ReadHostView`."""

    view: HostView


__all__ = [
    "CoreReport",
    "CoreView",
    "HostView",
    "HostViewReply",
    "PoolView",
    "ReadHostView",
    "SandboxView",
]
