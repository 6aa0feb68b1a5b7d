"""The cluster's decisions as event lists (`ClusterState.handle`): no I/O, no event loop, no clock.

Each test feeds events with `now` and checks the actions that come back and the records and
hosts they leave: creates and the queue, lost replies and retries, links that break and come
back (reconnect races, grace), reconcile (adoption, leftovers, what changed while away).
"""

from __future__ import annotations

import pytest

from rock_core import AlreadyExists, SandboxEvent, SandboxSpec, SandboxState, TransportError
from rock_core._cluster_events import (
    Adopt,
    Capacity,
    Changed,
    CreateAsked,
    Do,
    Event,
    Failed,
    GraceOver,
    LinkDown,
    LinkUp,
    Listing,
    Placed,
    RemoveLeftover,
    Replied,
    Retried,
    SendCreate,
    SendRemove,
    StartGrace,
    Wake,
)
from rock_core._cluster_state import ClusterState
from rock_core._errors import TransportError as CoreTransportError
from rock_core._link import LinkState
from rock_core._protocol import (
    SandboxChanged,
    SandboxDeadlines,
    SandboxInfo,
    SandboxListReply,
    Welcome,
)
from rock_core._records import SandboxRecord
from rock_core._scheduler import Scheduler

S = SandboxState
E = SandboxEvent
GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=2, memory=GiB)
GRACE = 30.0


def welcome(host_id: str = "h1", cpus: float = 4, instance: str = "i1") -> Welcome:
    return Welcome(
        protocol=1,
        agent_version="test",
        host_id=host_id,
        cpus=cpus,
        memory=16 * GiB,
        instance=instance,
    )


def info(sandbox_id: str, state: str = "running", **extra: object) -> SandboxInfo:
    return SandboxInfo(
        sandbox_id=sandbox_id,
        container_id=f"c-{sandbox_id}".ljust(64, "0"),
        image="img:1",
        state=state,
        owner="me",
        created_at=1.0,
        spec=SPEC,
        **extra,  # type: ignore[arg-type]
    )


def listing(*infos: SandboxInfo, removed: tuple[SandboxChanged, ...] = ()) -> Listing:
    return Listing("h1", SandboxListReply(id=1, sandboxes=list(infos), removed=list(removed)))


class Run:
    """A state with host h1 connected, fed events at increasing times."""

    def __init__(self, cpus: float = 16) -> None:
        self.state = ClusterState(Scheduler("spread"), grace=GRACE)
        self.now = 0.0
        self.feed(LinkUp("mem://h1", welcome(cpus=cpus)))

    def feed(self, event: Event, at: float | None = None) -> list[Do]:
        self.now = self.now if at is None else at
        return self.state.handle(event, self.now)

    def create(self, sandbox_id: str) -> SandboxRecord:
        """Ask, get placed, get the reply: a running sandbox."""
        record = SandboxRecord(sandbox_id, SPEC)
        assert Wake(sandbox_id) in self.feed(CreateAsked(record))
        assert self.feed(Placed(sandbox_id)) == [SendCreate(sandbox_id, "h1")]
        self.feed(Replied(sandbox_id, info(sandbox_id)))
        assert record.state is S.RUNNING
        return record

    def held(self) -> int:
        return self.state.scheduler.statistics().hosts[0].used.sandboxes

    def steps(self, sandbox_id: str) -> list[tuple[str, str]]:
        record = self.state.records[sandbox_id]
        return [(t.event.value, t.to_state.value) for t in record.history]


# ---------------------------------------------------------------------------- creates


def test_a_create_is_placed_sent_and_running() -> None:
    run = Run()
    record = SandboxRecord("sb-1", SPEC)
    assert run.feed(CreateAsked(record)) == [Capacity(), Wake("sb-1")]
    assert (record.host, record.holds_resources, record.placed.is_set()) == ("h1", True, False)
    assert run.feed(Placed("sb-1")) == [SendCreate("sb-1", "h1")]
    assert run.feed(Replied("sb-1", info("sb-1"))) == [Capacity()]  # its start slot is free
    assert run.steps("sb-1") == [("place", "creating"), ("created", "running")]
    assert run.held() == 1


def test_a_create_that_finds_no_room_is_woken_by_a_release() -> None:
    run = Run(cpus=2)
    first = run.create("sb-1")
    second = SandboxRecord("sb-2", SPEC)
    assert run.feed(CreateAsked(second)) == [Capacity()]  # queued: nobody to wake
    out: list[Do] = []
    first.fire(E.DELETE)
    run.state.release(first, run.now, out)
    assert out == [Capacity(), Wake("sb-2")]
    assert second.host == "h1"


def test_a_placement_deleted_before_its_create_resumed_sends_nothing() -> None:
    run = Run()
    record = SandboxRecord("sb-1", SPEC)
    run.feed(CreateAsked(record))
    out: list[Do] = []
    run.state.withdraw(record, run.now, out)  # delete_sandbox on a pending record
    assert out == [Capacity()] and not record.holds_resources
    record.fire(E.DELETE)
    assert run.feed(Placed("sb-1")) == []
    assert run.held() == 0


def test_a_failed_create_gives_its_room_back_and_a_cancelled_one_removes_its_container() -> None:
    run = Run()
    for sandbox_id, cancelled in (("sb-1", False), ("sb-2", True)):
        run.feed(CreateAsked(SandboxRecord(sandbox_id, SPEC)))
        run.feed(Placed(sandbox_id))
        out = run.feed(Failed(sandbox_id, "engine said no", cancelled=cancelled))
        removes = [a for a in out if isinstance(a, SendRemove)]
        assert removes == ([SendRemove(sandbox_id, "h1", quiet=True)] if cancelled else [])
        assert run.steps(sandbox_id)[-1] == ("create_failed", "failed")
    assert run.held() == 0


# ---------------------------------------------------------------------------- lost replies


def test_a_lost_create_reply_is_kept_for_a_retry_and_the_retry_takes_over() -> None:
    run = Run()
    record = SandboxRecord("sb-r", SPEC)
    record.chosen_id = True
    run.feed(CreateAsked(record))
    run.feed(Placed("sb-r"))
    record.error = CoreTransportError("link broke")
    run.feed(Failed("sb-r", "link broke"))
    assert record.retryable and run.held() == 0
    # The link comes back: the container the lost create made is listed, and kept for the retry.
    run.feed(LinkDown("h1", "link broke"), at=1.0)
    out = run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=2.0)
    out += run.feed(listing(info("sb-r")))
    assert not [a for a in out if isinstance(a, RemoveLeftover | SendRemove | Adopt)]
    assert run.state.records["sb-r"] is record and record.state is S.FAILED
    run.feed(Retried(record, "h1", info("sb-r")))
    retried = run.state.records["sb-r"]
    assert retried is not record and retried.state is S.RUNNING
    assert retried.history[0].reason == "create retried on h1 (first attempt: link broke)"
    assert run.held() == 1
    run.feed(Retried(record, "h1", info("sb-r")))  # a concurrent retry: the first one won
    assert run.state.records["sb-r"] is retried and run.held() == 1


def test_a_failed_create_that_is_not_retryable_is_removed_when_found() -> None:
    run = Run()
    run.feed(CreateAsked(SandboxRecord("sb-f", SPEC)))
    run.feed(Placed("sb-f"))
    run.feed(Failed("sb-f", "link broke"))
    run.feed(LinkDown("h1", "link broke"))
    run.feed(LinkUp("mem://h1", welcome(), known="h1"))
    assert run.feed(listing(info("sb-f"))) == [RemoveLeftover("sb-f", "h1")]


# ---------------------------------------------------------------------------- links and grace


def test_a_broken_link_drains_the_host_and_starts_one_grace_timer() -> None:
    run = Run()
    run.create("sb-1")
    out = run.feed(LinkDown("h1", "no heartbeat answer"), at=10.0)
    assert out == [Capacity(), StartGrace("h1", 0, GRACE)]
    host = run.state.hosts["h1"]
    assert (host.state, host.down_since, host.last_error) == (
        LinkState.RECONNECTING,
        10.0,
        "no heartbeat answer",
    )
    assert run.state.scheduler.statistics().hosts[0].draining
    assert run.feed(LinkDown("h1", "connection refused"), at=11.0) == []  # a failed reconnect
    assert host.last_error == "connection refused" and host.down_since == 10.0


def test_grace_over_loses_the_host_and_its_sandboxes() -> None:
    run = Run()
    record = run.create("sb-1")
    run.feed(LinkDown("h1", "gone"), at=10.0)
    assert run.feed(GraceOver("h1", 0), at=40.0) == []
    assert run.state.hosts["h1"].state == LinkState.LOST
    assert record.state is S.LOST and not record.holds_resources
    assert record.history[-1].reason == "host h1 unreachable for more than 30 s"
    assert run.state.scheduler.statistics().hosts == ()


def test_a_grace_timer_of_an_earlier_outage_is_dropped() -> None:
    run = Run()
    record = run.create("sb-1")
    run.feed(LinkDown("h1", "blip"), at=10.0)
    run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=11.0)  # back: generation 1
    run.feed(listing(info("sb-1")))
    run.feed(LinkDown("h1", "blip again"), at=20.0)  # its own timer has generation 1
    assert run.feed(GraceOver("h1", 0), at=40.0) == []  # the first outage's timer: stale
    assert run.state.hosts["h1"].state == LinkState.RECONNECTING
    assert record.state is S.RUNNING
    run.feed(GraceOver("h1", 1), at=50.0)
    assert run.state.hosts["h1"].state == LinkState.LOST


def test_a_timer_that_fires_after_the_host_came_back_is_dropped() -> None:
    run = Run()
    run.create("sb-1")
    run.feed(LinkDown("h1", "blip"), at=10.0)
    run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=11.0)
    assert run.feed(GraceOver("h1", 1), at=40.0) == []
    assert run.state.hosts["h1"].state == LinkState.CONNECTED


def test_a_lost_host_that_comes_back_is_reconciled_and_its_sandboxes_found() -> None:
    run = Run()
    running, stopped, gone = run.create("sb-run"), run.create("sb-stop"), run.create("sb-gone")
    run.feed(LinkDown("h1", "gone"), at=10.0)
    run.feed(GraceOver("h1", 0), at=40.0)
    run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=50.0)
    assert run.state.hosts["h1"].state == LinkState.CONNECTED
    run.feed(listing(info("sb-run"), info("sb-stop", "exited")))
    assert (running.state, stopped.state, gone.state) == (S.RUNNING, S.STOPPED, S.FAILED)
    assert running.history[-1].reason == "host reconciled"
    assert run.held() == 2


def test_a_drained_host_stays_drained_across_an_outage() -> None:
    run = Run()
    host = run.state.hosts["h1"]
    run.state.drain(host, True, [])
    run.feed(LinkDown("h1", "gone"))
    run.feed(LinkUp("mem://h1", welcome(), known="h1"))
    assert run.state.scheduler.statistics().hosts[0].draining
    run.feed(LinkDown("h1", "gone"))
    run.feed(GraceOver("h1", 1))
    run.feed(LinkUp("mem://h1", welcome(), known="h1"))
    assert run.state.scheduler.statistics().hosts[0].draining


def test_links_that_lead_to_the_wrong_host_are_refused() -> None:
    run = Run()
    with pytest.raises(AlreadyExists, match=r"^two addresses lead to the same host 'h1'$"):
        run.feed(LinkUp("mem://other", welcome()))
    run.feed(LinkDown("h1", "gone"))
    with pytest.raises(TransportError, match=r"^mem://h1 now answers as host 'h2', not 'h1'$"):
        run.feed(LinkUp("mem://h1", welcome("h2"), known="h1"))
    assert run.state.hosts["h1"].state == LinkState.RECONNECTING


def test_an_agent_restart_is_noticed(caplog: pytest.LogCaptureFixture) -> None:
    run = Run()
    run.feed(LinkDown("h1", "gone"))
    run.feed(LinkUp("mem://h1", welcome(instance="i2"), known="h1"))
    assert "the agent on h1 restarted" in caplog.text
    assert run.state.hosts["h1"].instance == "i2"


# ---------------------------------------------------------------------------- reconcile


def test_unknown_containers_of_this_owner_are_adopted() -> None:
    run = Run()
    out = run.feed(listing(info("sb-a"), info("sb-b", "exited")))
    assert [a for a in out if isinstance(a, Adopt)] == [Adopt("sb-a", "h1"), Adopt("sb-b", "h1")]
    assert run.steps("sb-a") == [("place", "creating"), ("created", "running")]
    assert run.steps("sb-b")[-1] == ("stopped", "stopped")
    assert run.state.records["sb-a"].settled.is_set() and run.held() == 2


def test_a_create_in_flight_is_left_to_its_create() -> None:
    run = Run()
    record = SandboxRecord("sb-1", SPEC)
    run.feed(CreateAsked(record))
    run.feed(Placed("sb-1"))
    out = run.feed(listing(info("sb-1")))  # the agent made it; the reply is on its way
    assert out == [] and record.state is S.CREATING


def test_what_the_agent_did_while_away_is_learned() -> None:
    run = Run()
    for name in ("sb-idle", "sb-removed", "sb-died", "sb-deleting"):
        run.create(name)
    run.state.records["sb-deleting"].fire(E.DELETE)
    removed = SandboxChanged(
        sandbox_id="sb-removed", state="deleted", cause="lifetime", reason="ran for 60 s"
    )
    idle = info("sb-idle", "exited", deadlines=SandboxDeadlines(idle_timeout=5, stop_cause="idle"))
    out = run.feed(listing(idle, info("sb-died", "exited"), removed=(removed,)))
    assert run.steps("sb-idle")[-2:] == [("expire", "stopping"), ("stopped", "stopped")]
    assert run.steps("sb-removed")[-3:] == [
        ("expire", "stopping"),
        ("delete", "deleting"),
        ("deleted", "deleted"),
    ]
    assert run.steps("sb-died")[-1] == ("fail", "failed")
    assert run.steps("sb-deleting")[-1] == ("deleted", "deleted")  # gone: its delete is done
    assert not [a for a in out if isinstance(a, RemoveLeftover | SendRemove)]
    assert run.held() == 2  # sb-idle (stopped keeps its room) and sb-died


def test_a_delete_that_was_under_way_is_finished_when_its_container_is_listed() -> None:
    run = Run()
    record = run.create("sb-1")
    record.fire(E.DELETE)
    assert run.feed(listing(info("sb-1"))) == [RemoveLeftover("sb-1", "h1")]


# ---------------------------------------------------------------------------- pushed changes


def test_pushed_changes_move_settled_sandboxes_only() -> None:
    run = Run()
    record = run.create("sb-1")
    stop = SandboxChanged(sandbox_id="sb-1", state="stopped", cause="idle", reason="idle 5 s")
    run.feed(Changed("h1", stop))
    assert run.steps("sb-1")[-2:] == [("expire", "stopping"), ("stopped", "stopped")]
    run.feed(Changed("h1", stop))  # a duplicate changes nothing
    assert len(record.history) == 4
    run.feed(Changed("h2", SandboxChanged(sandbox_id="sb-1", state="deleted", cause="x")))
    assert record.state is S.STOPPED  # another host's word about it is ignored
    gone = SandboxChanged(sandbox_id="sb-1", state="deleted", cause="request", reason="rm")
    assert run.feed(Changed("h1", gone)) == [Capacity()]
    assert record.state is S.DELETED and run.held() == 0
