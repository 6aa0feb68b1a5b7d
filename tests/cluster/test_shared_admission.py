"""Several trainers, one fleet: three trainer processes, each embedding its own core, over the
same three namespace hosts (real sshd, real socket agents, real Docker). Each asks for more
sandboxes than the hosts hold; no host ever goes over its limits, counted by the engine and by
the agents, and every create either succeeds or ends in `QueueTimedOut`."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from ._netns import NetnsCluster
from ._shared_fleet import HeldCounter, agent_counts, run_trainers, start_agents, stop_agents

pytestmark = pytest.mark.anyio
MAX_STARTS = 2
MAX_SANDBOXES = 2


@pytest.fixture(scope="module")
def fleet(netns_hosts: NetnsCluster) -> Iterator[NetnsCluster]:
    procs = start_agents(netns_hosts, max_starts=MAX_STARTS, max_sandboxes=MAX_SANDBOXES)
    try:
        yield netns_hosts
    finally:
        stop_agents(procs)


async def test_three_trainers_never_overrun_a_host_and_all_their_creates_succeed(
    fleet: NetnsCluster,
) -> None:
    with HeldCounter(list(fleet)) as held:
        reports = await anyio.to_thread.run_sync(
            lambda: run_trainers(fleet, 3, 6, hold=0.5, queue_timeout=120)
        )
    assert [(r["ok"], r["timed_out"], r["errors"], r["left"]) for r in reports] == [
        (6, 0, [], 0)
    ] * 3
    assert held.looks > 10
    assert max(held.most.values()) <= MAX_SANDBOXES, held.most
    assert max(held.most.values()) == MAX_SANDBOXES  # the hosts were filled
    counts = await agent_counts(fleet)
    assert sorted(counts) == sorted(h.host_id for h in fleet)
    for values in counts.values():
        assert values["rock_admission_starts_peak"] <= MAX_STARTS
        assert values["rock_admission_sandboxes_peak"] <= MAX_SANDBOXES
        assert values["rock_admission_starts"] == 0
    refused = sum(v for c in counts.values() for k, v in c.items() if "refusals_total" in k)
    assert refused > 0  # 18 creates for 6 places: the cores did meet full hosts


async def test_creates_that_find_no_room_in_time_end_in_queue_timed_out_and_leave_nothing(
    fleet: NetnsCluster,
) -> None:
    with HeldCounter(list(fleet)) as held:
        reports = await anyio.to_thread.run_sync(
            lambda: run_trainers(fleet, 3, 4, hold=6.0, queue_timeout=2.0)
        )
    ok = sum(r["ok"] for r in reports)
    timed_out = sum(r["timed_out"] for r in reports)
    assert [r["errors"] for r in reports] == [[], [], []]
    assert ok + timed_out == 12
    assert 0 < ok <= 3 * MAX_SANDBOXES and timed_out >= 12 - 3 * MAX_SANDBOXES
    assert max(held.most.values()) <= MAX_SANDBOXES, held.most
    assert [r["left"] for r in reports] == [0, 0, 0]
