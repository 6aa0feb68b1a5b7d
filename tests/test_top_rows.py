"""The live view's rows as plain calls: made from host views, sorted, filtered, shown."""

from __future__ import annotations

import pytest

from rock_core.protocol import (
    CoreView,
    HostView,
    PoolView,
    SandboxDeadlines,
    SandboxInfo,
    SandboxStats,
    SandboxView,
)
from rock_sdk._top import (
    HOST_COLUMNS,
    SANDBOX_COLUMNS,
    SORT_KEYS,
    HostRow,
    by_owner,
    sort_rows,
)
from rock_sdk._top._rows import snapshot_of

NOW = 1_700_000_000.0


def info(
    sandbox_id: str, owner: str, age: float, state: str = "running", now: float = NOW
) -> SandboxInfo:
    return SandboxInfo(
        sandbox_id=sandbox_id,
        container_id="c" * 64,
        image="python:3.11",
        state=state,
        owner=owner,
        created_at=now - age,
    )


def stats(sandbox_id: str, cpu: float, memory: int) -> SandboxStats:
    return SandboxStats(
        sandbox_id=sandbox_id,
        time=NOW,
        cpu_percent=cpu,
        cpu_seconds=1.0,
        interval=1.0,
        memory=memory,
        memory_limit=1 << 30,
        pids=3,
    )


def pool(hits: int) -> PoolView:
    return PoolView(
        name="swe",
        image="python:3.11",
        size=2,
        ready=1,
        target=2,
        handed_out=1,
        hits=hits,
        misses=0,
    )


def views() -> list[HostView]:
    timed = info("sb-b", "team-b", age=30)
    timed.deadlines = SandboxDeadlines(idle_at=NOW + 600, lifetime_at=NOW + 90)
    a = HostView(
        host_id="a",
        time=NOW,
        cpus=8,
        memory=16 << 30,
        cpus_reserved=1.5,
        memory_reserved=1 << 30,
        starting=1,
        sandboxes=[
            SandboxView(info=info("sb-a", "team-a", age=300), stats=stats("sb-a", 5.0, 10 << 20)),
            SandboxView(info=timed, stats=stats("sb-b", 90.0, 1 << 20)),
        ],
        cores=[
            CoreView(owner="team-a", at=NOW - 5, queued=2, pools=[pool(hits=1)]),
            CoreView(owner="team-b", at=NOW - 1, queued=1),
        ],
    )
    b = HostView(
        host_id="b",
        time=NOW + 3600,  # another clock: ages and deadlines are measured against it
        cpus=4,
        memory=8 << 30,
        sandboxes=[
            SandboxView(info=info("sb-c", "team-a", age=10, state="exited", now=NOW + 3600))
        ],
        cores=[CoreView(owner="team-a", at=NOW - 2, queued=2, pools=[pool(hits=4)])],
    )
    return [a, b]


def test_a_snapshot_has_every_host_sandbox_and_each_core_pool_once() -> None:
    down = HostRow(host="c", link="reconnecting", error="connection refused")
    snap = snapshot_of(views(), [down])
    assert [(h.host, h.link, h.queued, h.starting, h.sandboxes) for h in snap.hosts] == [
        ("a", "connected", 3, 1, 2),
        ("b", "connected", 2, 0, 1),
        ("c", "reconnecting", 0, 0, 0),
    ]
    rows = {r.sandbox_id: r for r in snap.sandboxes}
    assert (rows["sb-a"].age, rows["sb-a"].expires_in, rows["sb-a"].cpu_percent) == (300, None, 5)
    assert (rows["sb-b"].expiry, rows["sb-b"].expires_in) == ("lifetime", 90)  # the nearest
    assert (rows["sb-c"].age, rows["sb-c"].memory, rows["sb-c"].pids) == (10, None, None)
    # team-a's pool reported to two hosts: the latest report (from host b) is shown.
    assert [(p.owner, p.name, p.hits) for p in snap.pools] == [("team-a", "swe", 4)]


def test_sorting_puts_the_busiest_oldest_and_soonest_first_and_unknowns_last() -> None:
    rows = snapshot_of(views()).sandboxes
    order = {key: [r.sandbox_id for r in sort_rows(rows, key)] for key in SORT_KEYS}
    assert order["host"] == order["sandbox_id"] == ["sb-a", "sb-b", "sb-c"]
    assert order["state"] == ["sb-c", "sb-a", "sb-b"]  # exited < running
    assert order["owner"] == ["sb-a", "sb-c", "sb-b"]
    assert order["age"] == ["sb-a", "sb-b", "sb-c"]
    assert order["expires_in"] == ["sb-b", "sb-a", "sb-c"]
    assert order["cpu"] == ["sb-b", "sb-a", "sb-c"]
    assert order["memory"] == ["sb-a", "sb-b", "sb-c"]
    with pytest.raises(ValueError, match="cannot sort by 'size': one of host, sandbox_id, "):
        sort_rows(rows, "size")


def test_the_owner_filter_keeps_owners_containing_the_text() -> None:
    rows = snapshot_of(views()).sandboxes
    assert [r.sandbox_id for r in by_owner(rows, "-b")] == ["sb-b"]
    assert len(by_owner(rows, "")) == 3
    assert by_owner(rows, "nobody") == []


def test_cells_show_used_of_total_and_dashes_for_unknowns() -> None:
    snap = snapshot_of(views())
    host = [c.cell(snap.hosts[0]) for c in HOST_COLUMNS]
    assert host == ["a", "connected", "1.5/8", "1.0GiB/16.0GiB", "1", "3", "2", ""]
    rows = {r.sandbox_id: [c.cell(r) for c in SANDBOX_COLUMNS] for r in snap.sandboxes}
    assert rows["sb-b"][4:] == ["30s", "lifetime 90s", "90.0%", "1.0MiB/1.0GiB", "3"]
    assert rows["sb-c"][4:] == ["10s", "-", "-", "-", "-"]
