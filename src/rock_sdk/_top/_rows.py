"""The live view's rows: hosts, sandboxes and pools, made from the agents' host views.

Rules:
- Plain data and plain functions, no I/O: `snapshot_of` turns what the agents answered (and
  the links of the hosts that did not) into one `Snapshot`; the Textual app, the one-shot
  tables and ``--json`` all show these same rows.
- Times are the agent's: a sandbox's age and the time left to its deadline are measured
  against the view's own `time`, so a clock that differs between hosts changes nothing.
- A host's queue depth adds up the queues the cores using it reported (a queued create waits
  for room on any host of its core, so it shows on each of them); its starts in flight are
  the agent's own count. Pools are a core's: one row per (core, pool), named by the core's
  owner, from the latest report of any host.
- Sorting and filtering are plain functions over rows (`sort_rows`, `by_owner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from rock_core.protocol import HostView, SandboxView


class HostRow(msgspec.Struct, kw_only=True):
    """One host: its link, what its sandboxes reserve of its cpus and memory, and its work."""

    host: str
    link: str  # connected, reconnecting, lost; or why its view is missing
    cpus_used: float = 0.0
    cpus: float = 0.0
    memory_used: int = 0
    memory: int = 0
    starting: int = 0
    queued: int = 0
    sandboxes: int = 0
    error: str = ""


class SandboxRow(msgspec.Struct, kw_only=True):
    """One sandbox: where, whose, how old, how long until it expires, what it uses now."""

    host: str
    sandbox_id: str
    state: str
    owner: str
    image: str
    age: float  # seconds since it was created
    expires_in: float | None = None  # seconds to its nearest deadline (idle or lifetime)
    expiry: str = ""  # which one: "idle", "lifetime", "delete"
    cpu_percent: float | None = None  # 100 = one full cpu
    memory: int | None = None
    memory_limit: int = 0
    pids: int | None = None


class PoolRow(msgspec.Struct, kw_only=True):
    """One warm pool of one core (a program), as that core last reported it."""

    owner: str
    name: str
    image: str
    size: int
    ready: int
    target: int
    handed_out: int
    hits: int
    misses: int


class Snapshot(msgspec.Struct, kw_only=True):
    """Everything the live view shows at one refresh."""

    hosts: list[HostRow]
    sandboxes: list[SandboxRow]
    pools: list[PoolRow]


def snapshot_of(views: Sequence[HostView], missing: Sequence[HostRow] = ()) -> Snapshot:
    """The rows of the hosts that answered (`views`) and of those that did not (`missing`)."""
    hosts = [*(_host_row(view) for view in views), *missing]
    sandboxes = [_sandbox_row(view, s) for view in views for s in view.sandboxes]
    latest: dict[tuple[str, str], tuple[float, PoolRow]] = {}
    for view in views:
        for core in view.cores:
            for pool in core.pools:
                row = PoolRow(owner=core.owner, **msgspec.structs.asdict(pool))
                key = (core.owner, pool.name)
                if key not in latest or latest[key][0] < core.at:
                    latest[key] = (core.at, row)
    pools = [row for _, row in latest.values()]
    return Snapshot(
        hosts=sorted(hosts, key=lambda r: r.host),
        sandboxes=sort_rows(sandboxes, "host"),
        pools=sorted(pools, key=lambda r: (r.owner, r.name)),
    )


def _host_row(view: HostView) -> HostRow:
    return HostRow(
        host=view.host_id,
        link="connected",
        cpus_used=view.cpus_reserved,
        cpus=view.cpus,
        memory_used=view.memory_reserved,
        memory=view.memory,
        starting=view.starting,
        queued=sum(core.queued for core in view.cores),
        sandboxes=len(view.sandboxes),
    )


def _sandbox_row(view: HostView, sandbox: SandboxView) -> SandboxRow:
    info, stats = sandbox.info, sandbox.stats
    expiry, at = "", None
    d = info.deadlines
    if d is not None:
        candidates = [(d.idle_at, "idle"), (d.lifetime_at, "lifetime"), (d.delete_at, "delete")]
        known = [(when, what) for when, what in candidates if when is not None]
        if known:
            at, expiry = min(known)
    return SandboxRow(
        host=view.host_id,
        sandbox_id=info.sandbox_id,
        state=info.state,
        owner=info.owner,
        image=info.image,
        age=max(0.0, view.time - info.created_at),
        expires_in=None if at is None else max(0.0, at - view.time),
        expiry=expiry,
        cpu_percent=None if stats is None else stats.cpu_percent,
        memory=None if stats is None else stats.memory,
        memory_limit=0 if stats is None else stats.memory_limit,
        pids=None if stats is None else stats.pids,
    )


#: The columns a sandbox listing may be sorted by, in the order the sort key cycles.
SORT_KEYS = ("host", "sandbox_id", "state", "owner", "age", "expires_in", "cpu", "memory")


def sort_rows(rows: Sequence[SandboxRow], key: str) -> list[SandboxRow]:
    """`rows` sorted by `key` (one of `SORT_KEYS`): numbers largest first (the busiest, the
    oldest), the time to expiry soonest first, text in order; unknown values last."""
    if key not in SORT_KEYS:
        raise ValueError(f"cannot sort by {key!r}: one of {', '.join(SORT_KEYS)}")
    field = {"cpu": "cpu_percent"}.get(key, key)

    def order(row: SandboxRow) -> tuple[Any, ...]:
        value = getattr(row, field)
        if value is None:
            return (1, 0, row.host, row.sandbox_id)
        if isinstance(value, str):
            return (0, value, row.host, row.sandbox_id)
        ranked = value if key == "expires_in" else -value
        return (0, ranked, row.host, row.sandbox_id)

    return sorted(rows, key=order)


def by_owner(rows: Sequence[SandboxRow], text: str) -> list[SandboxRow]:
    """The rows whose owner contains `text` (all of them for an empty `text`)."""
    return [row for row in rows if text in row.owner]


__all__ = [
    "SORT_KEYS",
    "HostRow",
    "PoolRow",
    "SandboxRow",
    "Snapshot",
    "by_owner",
    "snapshot_of",
    "sort_rows",
]
