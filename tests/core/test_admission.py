"""Admission and bounded waits: the room explained as plain calls, then the cluster against fakes.

- `room_for` / `explain` (pure, `_room`): why a request waits and what would fit.
- A create that finds no room logs once, shows in `statistics()`, and ends in `CapacityError`
  after its queue timeout (the cluster's default, or its own); one that only waits for its
  turn keeps waiting.
- A disk limit needs hosts that announce ``disk-limits``: refused before placement when none
  does, and before the create is sent on a host that does not.
- `open_cluster` refuses bad options, a lease too short for the heartbeat among them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_core import BadRequest, CapacityError, Cluster, SandboxSpec, SandboxState, open_cluster
from rock_core._endpoint import Connection
from rock_core._protocol import CreateSandbox, Welcome
from rock_core._room import explain, room_for
from rock_core._scheduler import Demand, Resources, Scheduler
from rock_core.testing import FakeAgent, FakeAgentConnector, open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=1, memory=GiB)


# ------------------------------------------------------------------------- the room (pure)


def two_hosts(max_starts: int = 8) -> Scheduler:
    sched = Scheduler(default_max_starts=max_starts)
    sched.add_host("a", Resources(2, 8 * GiB))
    sched.add_host("b", Resources(4, 4 * GiB))
    return sched


def test_no_room_names_what_this_cluster_holds_on_each_host_and_what_would_fit() -> None:
    sched = two_hosts()
    for i in range(3):  # placed on b, a, b
        sched.submit(f"r{i}", Demand(1, GiB), now=0)
    assert sched.submit("big", Demand(3, GiB), now=0) == []
    room = room_for(sched.statistics(), Demand(3, GiB))
    assert room.blocker == "room"
    assert room.largest is not None and room.largest.host_id == "b"
    assert explain(room) == (
        "host a (2 cpus, 8 GiB): this cluster holds 1 sandbox (1 cpu, 1 GiB), free 1 cpu"
        " and 7 GiB; host b (4 cpus, 4 GiB): this cluster holds 2 sandboxes (2 cpus, 2 GiB),"
        " free 2 cpus and 2 GiB. Only this cluster's sandboxes are counted: other owners' and"
        " the engine's own limits are not. A sandbox of at most 2 cpus and 2 GiB would fit now"
        " on host b"
    )


def test_nothing_fits_when_every_cpu_is_held() -> None:
    sched = Scheduler()
    sched.add_host("a", Resources(1, 8 * GiB))
    sched.submit("r0", Demand(1, GiB), now=0)
    room = room_for(sched.statistics(), Demand(1, GiB))
    assert room.largest is None
    assert explain(room).endswith(". Nothing fits now on any host")


def test_every_host_draining_says_how_to_undrain_one() -> None:
    sched = two_hosts()
    sched.drain_host("a")
    sched.drain_host("b")
    room = room_for(sched.statistics(), Demand(1, GiB))
    assert room.blocker == "draining"
    assert explain(room) == (
        "all hosts are draining: undrain one with drain_host('a', False) (host a (2 cpus,"
        " 8 GiB): this cluster holds 0 sandboxes (0 cpus, 0 B), free 2 cpus and 8 GiB,"
        " draining; host b (4 cpus, 4 GiB): this cluster holds 0 sandboxes (0 cpus, 0 B),"
        " free 4 cpus and 4 GiB, draining)"
    )


def test_hosts_drained_by_the_driver_are_named_away_not_draining() -> None:
    sched = two_hosts()
    sched.drain_host("a")
    sched.drain_host("b")
    away = {"a": "its link is reconnecting", "b": "its link is reconnecting"}
    room = room_for(sched.statistics(), Demand(1, GiB), away)
    assert room.blocker == "draining"
    assert explain(room).startswith(
        "no host takes placements now (host a (2 cpus, 8 GiB): this cluster holds 0 sandboxes"
        " (0 cpus, 0 B), free 2 cpus and 8 GiB, its link is reconnecting; host b"
    )


def test_a_request_behind_full_start_slots_waits_its_turn() -> None:
    sched = two_hosts(max_starts=1)
    sched.submit("r0", Demand(1, GiB), now=0)
    sched.submit("r1", Demand(1, GiB), now=0)
    assert sched.submit("r2", Demand(1, GiB), now=0) == []
    room = room_for(sched.statistics(), Demand(1, GiB))
    assert room.blocker == "turn"
    assert explain(room).startswith(
        "a host has room; it waits for a start slot or for older requests (host a (2 cpus,"
        " 8 GiB): this cluster holds 1 sandbox (1 cpu, 1 GiB), free 1 cpu and 7 GiB,"
        " 1 starts in flight (its most);"
    )


def test_a_host_at_its_sandbox_limit_takes_nothing() -> None:
    sched = Scheduler()
    sched.add_host("a", Resources(8, 8 * GiB, sandboxes=1))
    sched.submit("r0", Demand(1, GiB), now=0)
    room = room_for(sched.statistics(), Demand(1, GiB))
    assert room.blocker == "room"
    assert "free 7 cpus and 7 GiB, at its limit of 1 sandboxes." in explain(room)


def test_has_room_agrees_with_the_blocker() -> None:
    sched = two_hosts(max_starts=1)
    sched.submit("r0", Demand(1, GiB), now=0)
    sched.submit("r1", Demand(1, GiB), now=0)
    for demand in (Demand(1, GiB), Demand(3, GiB), Demand(1, 7 * GiB), Demand(5, GiB)):
        room = room_for(sched.statistics(), demand)
        assert sched.has_room(demand) == (room.blocker == "turn"), demand
    sched.drain_host("a")
    sched.drain_host("b")
    assert not sched.has_room(Demand(1, GiB))


def test_no_hosts() -> None:
    room = room_for(Scheduler().statistics(), Demand(1, GiB))
    assert room.blocker == "no-hosts"
    assert explain(room) == "the cluster has no host (every host was lost)"


def test_the_scheduler_lists_its_queue_oldest_first() -> None:
    sched = Scheduler()
    sched.add_host("a", Resources(1, 8 * GiB))
    sched.submit("r0", Demand(1, GiB), now=0)
    sched.submit("r1", Demand(1, 2 * GiB, "img"), now=5)
    sched.submit("r2", Demand(0.5, GiB), now=7)
    assert [(q.request_id, q.demand, q.since) for q in sched.queued()] == [
        ("r1", Demand(1, 2 * GiB, "img"), 5),
        ("r2", Demand(0.5, GiB), 7),
    ]
    assert sched.is_queued("r1") and not sched.is_queued("r0")


# ------------------------------------------------------------------------- waits (cluster)


@pytest.mark.anyio
async def test_a_create_that_waits_logs_once_and_shows_in_statistics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_fake_cluster(1, cpus=1, memory=8 * GiB) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        caplog.set_level(logging.DEBUG, logger="rock_core")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: cluster.create_sandbox(SPEC, sandbox_id="sb-2"))
            await anyio.sleep(2.5)
            (queued,) = cluster.statistics().queued
            assert (queued.sandbox_id, queued.cpus, queued.memory, queued.image) == (
                "sb-2",
                1,
                GiB,
                "img:1",
            )
            assert queued.waited == pytest.approx(2.5)
            await cluster.delete_sandbox("sb-1")
        assert cluster.record("sb-2").state is SandboxState.RUNNING
        assert cluster.statistics().queued == ()
    waits = [r for r in caplog.records if "waits for" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in waits] == [
        (
            logging.WARNING,
            "sandbox sb-2 waits for room: it needs 1 cpu and 1 GiB; host fake-0 (1 cpu, 8 GiB):"
            " this cluster holds 1 sandbox (1 cpu, 1 GiB), free 0 cpus and 7 GiB. Only this"
            " cluster's sandboxes are counted: other owners' and the engine's own limits are"
            " not. Nothing fits now on any host",
        )
    ]


@pytest.mark.anyio
async def test_the_cluster_default_bounds_every_create_and_none_waits_for_ever() -> None:
    async with open_fake_cluster(1, cpus=1, memory=8 * GiB) as cluster:
        cluster.queue_timeout = 0.05
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        with pytest.raises(CapacityError, match=r"^sandbox sb-2 found no room within 0.05 s: "):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-2")
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: cluster.create_sandbox(SPEC, sandbox_id="sb-3", queue_timeout=None)
            )
            await anyio.sleep(0.2)  # past the cluster's default: still waiting
            assert cluster.record("sb-3").state is SandboxState.PENDING
            await cluster.delete_sandbox("sb-1")
        assert cluster.record("sb-3").state is SandboxState.RUNNING


@pytest.mark.anyio
async def test_a_create_after_drain_host_says_how_to_undrain() -> None:
    async with open_fake_cluster(1) as cluster:
        cluster.drain_host("fake-0")
        with pytest.raises(CapacityError) as info:
            await cluster.create_sandbox(SPEC, sandbox_id="sb-1", queue_timeout=0.05)
        assert str(info.value) == (
            "sandbox sb-1 found no room within 0.05 s: it needs 1 cpu and 1 GiB; all hosts are"
            " draining: undrain one with drain_host('fake-0', False) (host fake-0 (4 cpus,"
            " 16 GiB): this cluster holds 0 sandboxes (0 cpus, 0 B), free 4 cpus and 16 GiB,"
            " draining). (queue_timeout=None waits without a limit.)"
        )
        assert cluster.statistics().queue_depth == 0


@pytest.mark.anyio
async def test_waiting_only_for_a_start_slot_outlasts_the_queue_timeout() -> None:
    go = anyio.Event()

    async def slow_start(sandbox_id: str) -> None:
        if sandbox_id == "sb-1":
            await go.wait()

    async with open_fake_cluster(1, max_starts=1, start_latency=slow_start) as cluster:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: cluster.create_sandbox(SPEC, sandbox_id="sb-1"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(
                lambda: cluster.create_sandbox(SPEC, sandbox_id="sb-2", queue_timeout=0.05)
            )
            await anyio.sleep(0.2)  # past its queue timeout: a host has room, it waits its turn
            assert cluster.record("sb-2").state is SandboxState.PENDING
            go.set()
        assert cluster.record("sb-2").state is SandboxState.RUNNING


@pytest.mark.anyio
@pytest.mark.parametrize("bad", [math.nan, -1, 0, "5", True, [1]])
async def test_a_bad_queue_timeout_is_refused(bad: object) -> None:
    async with open_fake_cluster(1) as cluster:
        with pytest.raises(BadRequest) as info:
            await cluster.create_sandbox(SPEC, queue_timeout=bad)  # type: ignore[arg-type]
        assert str(info.value) == (
            "queue_timeout must be a positive number of seconds, or None to wait without a"
            f" limit, got {bad!r}"
        )
        assert cluster.records() == []


# ------------------------------------------------------------------------- disk limits


class DiskAgent(FakeAgent):
    """A fake agent whose engine can limit disk (it announces ``disk-limits``)."""

    async def accept(self, conn: Connection) -> Welcome:
        welcome = await super().accept(conn)
        welcome.capabilities = [*welcome.capabilities, "disk-limits"]
        return welcome


@asynccontextmanager
async def mixed_cluster(*agents: FakeAgent) -> AsyncIterator[Cluster]:
    """A cluster of the given fake agents, each reached through its connector."""
    connectors = [FakeAgentConnector(agent) for agent in agents]
    async with open_cluster(connectors, owner="fake-owner") as cluster:
        yield cluster


DISK_SPEC = SandboxSpec(image="img:1", cpus=1, memory=GiB, disk="1G")
NO_QUOTA = (
    "an engine limits a container's disk only with a storage driver that has quotas, such as"
    " overlay2 on xfs mounted with pquota"
)


@pytest.mark.anyio
async def test_a_disk_limit_no_host_can_enforce_is_refused_before_placement() -> None:
    async with mixed_cluster(FakeAgent(host_id="h-a"), FakeAgent(host_id="h-b")) as cluster:
        with pytest.raises(BadRequest) as info:
            await cluster.create_sandbox(DISK_SPEC, sandbox_id="sb-1")
        assert str(info.value) == (
            "no host can enforce disk='1G': the agents of hosts h-a, h-b do not announce"
            f" 'disk-limits' ({NO_QUOTA}); create the sandbox without a disk limit"
        )
        assert cluster.records() == []
        assert cluster.statistics().placements == 0


@pytest.mark.anyio
async def test_a_disk_limit_is_refused_on_a_host_that_cannot_enforce_it() -> None:
    plain, able = FakeAgent(host_id="h-a"), DiskAgent(host_id="h-b")
    async with mixed_cluster(plain, able) as cluster:
        # Spread ties go to the smaller id: the first lands on h-a, which cannot.
        with pytest.raises(BadRequest) as info:
            await cluster.create_sandbox(DISK_SPEC, sandbox_id="sb-1")
        assert str(info.value) == (
            f"host h-a cannot enforce disk='1G': its agent does not announce 'disk-limits'"
            f" ({NO_QUOTA}); create the sandbox without a disk limit"
        )
        assert not any(isinstance(m, CreateSandbox) for m in plain.received)
        assert_nothing_held(cluster)
        cluster.drain_host("h-a")
        record = await cluster.create_sandbox(DISK_SPEC, sandbox_id="sb-2")
        assert (record.host, record.state) == ("h-b", SandboxState.RUNNING)
        assert set(able.sandboxes) == {"sb-2"}


def assert_nothing_held(cluster: Cluster) -> None:
    stats = cluster.statistics()
    assert (stats.placed, stats.starting, stats.queue_depth) == (0, 0, 0)


# ------------------------------------------------------------------------- open_cluster options

NOWHERE = "unix:///nonexistent/rock-agent.sock"  # refused options never get this far


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"lease": 2},
            "lease (2 s) must be longer than heartbeat + heartbeat_timeout (5.0 + 10.0 = 15 s):"
            " a live link can be silent that long, and an agent drops a link silent for longer"
            " than its lease",
        ),
        (
            {"lease": 15, "heartbeat": 5, "heartbeat_timeout": 10},
            "lease (15 s) must be longer than heartbeat + heartbeat_timeout (5 + 10 = 15 s):"
            " a live link can be silent that long, and an agent drops a link silent for longer"
            " than its lease",
        ),
        ({"lease": math.inf}, "lease must be a positive, finite number of seconds, got inf"),
        ({"lease": math.nan}, "lease must be a positive, finite number of seconds, got nan"),
        ({"lease": 8 * 86400}, "lease must be at most 604800 s (7 days), got 691200"),
        ({"grace": -1}, "grace must be a positive, finite number of seconds, got -1"),
        ({"grace": True}, "grace must be a positive, finite number of seconds, got True"),
        ({"heartbeat": "5"}, "heartbeat must be a positive, finite number of seconds, got '5'"),
        (
            {"heartbeat_timeout": math.inf},
            "heartbeat_timeout must be a positive, finite number of seconds, got inf",
        ),
        ({"max_queue": -1}, "max_queue must be a whole number >= 0, got -1"),
        ({"max_queue": "3"}, "max_queue must be a whole number >= 0, got '3'"),
        ({"max_starts": 0}, "max_starts must be a whole number >= 1, got 0"),
        ({"max_starts": 2.5}, "max_starts must be a whole number >= 1, got 2.5"),
        ({"policy": "random"}, "unknown placement policy 'random': use 'spread' or 'binpack'"),
        ({"owner": ""}, "owner must be None or 1 to 256 characters with no NUL byte, got ''"),
        ({"owner": 7}, "owner must be None or 1 to 256 characters with no NUL byte, got 7"),
        ({"ssh": "me@host"}, "ssh must be None or an SshOptions, got 'me@host'"),
        ({"admin": "yes"}, "admin must be True or False, got 'yes'"),
        (
            {"queue_timeout": -5},
            "queue_timeout must be a positive number of seconds, or None to wait without a"
            " limit, got -5",
        ),
        (
            {"hosts": 7},
            "hosts must be an address or a list of addresses (str) or connectors, got 7",
        ),
        (
            {"hosts": [NOWHERE, 7]},
            "hosts must be an address or a list of addresses (str) or connectors,"
            f" got ['{NOWHERE}', 7]",
        ),
        (
            {"leases": 5},
            "unknown cluster option 'leases': the options are owner, policy,"
            " max_queue, max_starts, lease, grace, heartbeat, heartbeat_timeout, ssh, admin,"
            " queue_timeout, gc_tuning, start_gate",
        ),
    ],
)
async def test_open_cluster_refuses_bad_options(options: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"hosts": [NOWHERE], **options}
    with pytest.raises(BadRequest) as info:
        async with open_cluster(**kwargs):  # type: ignore[arg-type]
            pass
    assert str(info.value) == message
