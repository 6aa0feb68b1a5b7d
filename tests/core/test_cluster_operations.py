"""Stop, start, delete and admin removal as event lists (`ClusterState.handle`, `_cluster_ops`).

No I/O, no event loop, no clock: each test feeds the events the driver (`_operations`) would
report and checks the actions (the request to send, the error to raise, the room given back)
and the records they leave, for running, stopped, failed, lost, pending and deleting records,
a delete while a create is in flight, a stop whose reply is lost, and admin removal.
"""

from __future__ import annotations

from typing import cast

import pytest

from rock_core import SandboxEvent, SandboxState
from rock_core._cluster_events import (
    Capacity,
    ChangeFailed,
    ChangeReplied,
    CreateAsked,
    DeleteAsked,
    Failed,
    GraceOver,
    LinkDown,
    LinkUp,
    LockAndRemove,
    Placed,
    Refuse,
    RemoveAsked,
    Removed,
    RemovedByAdmin,
    RemoveFailed,
    RemoveLeftover,
    SendRemove,
    SendStart,
    SendStop,
    StartAsked,
    StopAsked,
    Wake,
)
from rock_core._connection import AgentConnection
from rock_core._errors import HostUnavailable, SandboxFailed, SandboxLost, SandboxNotFound
from rock_core._records import SandboxRecord
from tests.core.test_cluster_state import SPEC, Run, info, listing, welcome

S = SandboxState
E = SandboxEvent


class _Open:
    """A stand-in for a live link: the state only asks whether it is closed."""

    closed = False


class Ops(Run):
    """A `Run` whose host h1 has a live link (the driver sets it; the state reads it)."""

    def __init__(self, cpus: float = 16) -> None:
        super().__init__(cpus)
        self.state.hosts["h1"].connection = cast(AgentConnection, _Open())

    def create(self, sandbox_id: str) -> SandboxRecord:
        """A running sandbox whose create has finished (`create_sandbox` settles it)."""
        record = super().create(sandbox_id)
        record.settled.set()
        return record


def connected(cpus: float = 16) -> Ops:
    return Ops(cpus)


def refusal(actions: list[object]) -> Exception:
    assert len(actions) == 1 and isinstance(actions[0], Refuse), actions
    return actions[0].error


def stopped(run: Ops, sandbox_id: str) -> SandboxRecord:
    record = run.create(sandbox_id)
    run.feed(StopAsked(sandbox_id, 10.0))
    run.feed(ChangeReplied(sandbox_id, "stop", info(sandbox_id, "exited")))
    assert record.state is S.STOPPED
    return record


# ---------------------------------------------------------------------------- stop and start


def test_a_running_sandbox_stops_and_starts_again() -> None:
    run = connected()
    record = run.create("sb-1")
    assert run.feed(StopAsked("sb-1", 5.0)) == [SendStop("sb-1", "h1", 5.0)]
    assert record.state is S.STOPPING
    assert run.feed(ChangeReplied("sb-1", "stop", info("sb-1", "exited"))) == []
    assert record.state is S.STOPPED and record.info == info("sb-1", "exited")
    assert run.feed(StartAsked("sb-1")) == [SendStart("sb-1", "h1")]
    run.feed(ChangeReplied("sb-1", "start", info("sb-1")))
    assert run.steps("sb-1")[2:] == [
        ("stop", "stopping"),
        ("stopped", "stopped"),
        ("start", "creating"),
        ("created", "running"),
    ]
    assert [t.reason for t in record.history[2:]] == [
        "stop requested",
        "container stopped",
        "start requested",
        "container running again",
    ]
    assert run.held() == 1  # a stopped sandbox keeps its room


def test_a_change_to_the_state_a_sandbox_is_in_already_sends_nothing() -> None:
    run = connected()
    record = run.create("sb-1")
    assert run.feed(StartAsked("sb-1")) == []
    stopped(run, "sb-2")
    assert run.feed(StopAsked("sb-2", 10.0)) == []
    assert record.state is S.RUNNING and len(record.history) == 2


def test_a_failed_or_deleted_sandbox_refuses_stop_and_start() -> None:
    run = connected()
    failed = run.create("sb-f")
    failed.fire(E.FAIL, "its container is exited (exit code 1)")
    error = refusal(run.feed(StopAsked("sb-f", 10.0)))
    assert isinstance(error, SandboxFailed)
    assert str(error) == (
        "cannot stop sandbox sb-f: it failed (its container is exited (exit code 1)); delete it"
    )
    run.create("sb-d")
    run.feed(RemovedByAdmin("sb-d"))
    error = refusal(run.feed(StartAsked("sb-d")))
    assert isinstance(error, SandboxNotFound)
    assert str(error) == "cannot start sandbox sb-d: it was deleted"
    assert failed.state is S.FAILED


def test_a_lost_sandbox_refuses_stop_with_sandbox_lost() -> None:
    run = connected()
    record = run.create("sb-1")
    run.feed(LinkDown("h1", "gone"), at=10.0)
    run.feed(GraceOver("h1", 0), at=40.0)
    error = refusal(run.feed(StopAsked("sb-1", 10.0)))
    assert isinstance(error, SandboxLost)
    assert str(error) == (
        "sandbox sb-1 is lost: host h1 has been unreachable for more than 30 s; it is"
        " reconciled if the host comes back"
    )
    assert record.state is S.LOST


def test_a_stop_while_the_link_is_down_is_refused_and_moves_nothing() -> None:
    run = connected()
    record = run.create("sb-1")
    run.state.hosts["h1"].connection = None  # the driver drops it when the link breaks
    run.feed(LinkDown("h1", "no heartbeat answer"), at=10.0)
    error = refusal(run.feed(StopAsked("sb-1", 10.0), at=12.5))
    assert isinstance(error, HostUnavailable)
    assert str(error) == (
        "host h1 is reconnecting: its link has been down for 2.5 s"
        " (last error: no heartbeat answer)"
    )
    assert record.state is S.RUNNING


def test_a_queued_sandbox_refuses_stop_it_has_no_host() -> None:
    run = connected(cpus=2)
    run.create("sb-1")
    queued = SandboxRecord("sb-q", SPEC)
    run.feed(CreateAsked(queued))
    error = refusal(run.feed(StopAsked("sb-q", 10.0)))
    assert isinstance(error, SandboxFailed)
    assert str(error) == "sandbox sb-q has no reachable host"
    assert queued.state is S.PENDING


def test_a_stop_whose_reply_is_lost_fails_the_sandbox() -> None:
    run = connected()
    record = run.create("sb-1")
    run.feed(StopAsked("sb-1", 10.0))
    assert run.feed(ChangeFailed("sb-1", "stop", "the link broke mid-request")) == []
    assert run.steps("sb-1")[-1] == ("fail", "failed")
    assert record.history[-1].reason == "stop failed: the link broke mid-request"


def test_a_sandbox_whose_stop_or_start_reply_was_lost_keeps_its_container_at_reconnect() -> None:
    for doing in ("stop", "start"):
        run = connected()
        record = run.create("sb-1") if doing == "stop" else stopped(run, "sb-1")
        run.feed(StopAsked("sb-1", 10.0) if doing == "stop" else StartAsked("sb-1"))
        run.feed(ChangeFailed("sb-1", doing, "the link broke mid-request"))
        run.state.hosts["h1"].connection = None
        run.feed(LinkDown("h1", "reset"), at=10.0)
        run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=12.0)
        found = "exited" if doing == "stop" else "running"
        actions = run.feed(listing(info("sb-1", found)), at=12.0)
        assert not [a for a in actions if isinstance(a, (RemoveLeftover, SendRemove))], doing
        assert record.state is S.FAILED  # its owner decides: delete it, or the cluster's exit


def test_a_create_that_failed_on_a_broken_link_is_removed_as_a_leftover_at_reconnect() -> None:
    run = connected()
    run.feed(CreateAsked(SandboxRecord("sb-1", SPEC)))
    run.feed(Placed("sb-1"))
    run.feed(Failed("sb-1", "the agent refused: no room", cancelled=False))
    run.state.hosts["h1"].connection = None
    run.feed(LinkDown("h1", "reset"), at=10.0)
    run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=12.0)
    actions = run.feed(listing(info("sb-1")), at=12.0)
    assert [a for a in actions if isinstance(a, RemoveLeftover)] == [RemoveLeftover("sb-1", "h1")]


def test_a_stop_reply_that_arrives_after_the_host_was_lost_is_dropped() -> None:
    run = connected()
    record = run.create("sb-1")
    run.feed(StopAsked("sb-1", 10.0))
    run.feed(LinkDown("h1", "gone"), at=10.0)
    run.feed(GraceOver("h1", 0), at=40.0)
    assert run.feed(ChangeReplied("sb-1", "stop", info("sb-1", "exited"))) == []
    assert record.state is S.LOST  # the host's reconcile decides what it is now
    assert record.history[-1].reason == "host h1 unreachable for more than 30 s"


def test_a_failed_restart_fails_the_sandbox() -> None:
    run = connected()
    record = stopped(run, "sb-1")
    run.feed(StartAsked("sb-1"))
    run.feed(ChangeFailed("sb-1", "start", "no such image"))
    assert run.steps("sb-1")[-1] == ("create_failed", "failed")
    assert record.history[-1].reason == "restart failed: no such image"


# ---------------------------------------------------------------------------- delete


@pytest.mark.parametrize("kind", ["running", "stopped", "failed"])
def test_a_delete_takes_the_lock_removes_the_container_and_gives_the_room_back(kind: str) -> None:
    run = connected()
    record = stopped(run, "sb-1") if kind == "stopped" else run.create("sb-1")
    if kind == "failed":
        record.fire(E.FAIL, "its container is gone")
    assert run.feed(DeleteAsked("sb-1")) == [LockAndRemove("sb-1", cancel_create=False)]
    assert run.feed(RemoveAsked("sb-1")) == [SendRemove("sb-1", "h1")]
    assert run.steps("sb-1")[-1] == ("delete", "deleting")
    assert record.history[-1].reason == "delete requested"
    assert run.feed(Removed("sb-1")) == [Capacity()]
    assert run.steps("sb-1")[-1] == ("deleted", "deleted")
    assert record.history[-1].reason == "container removed"
    assert run.held() == 0


def test_a_delete_of_a_deleted_sandbox_does_nothing() -> None:
    run = connected()
    record = run.create("sb-1")
    run.feed(RemovedByAdmin("sb-1"))
    assert run.feed(DeleteAsked("sb-1")) == []
    assert run.feed(RemoveAsked("sb-1")) == []  # deleted while the delete waited for the lock
    assert record.state is S.DELETED and len(record.history) == 4


def test_a_delete_of_a_deleting_sandbox_sends_the_removal_again() -> None:
    run = connected()
    record = run.create("sb-1")
    record.fire(E.DELETE, "delete requested")
    assert run.feed(RemoveAsked("sb-1")) == [SendRemove("sb-1", "h1")]
    assert len(record.history) == 3


def test_a_delete_of_a_queued_sandbox_takes_it_out_of_the_queue_and_wakes_its_create() -> None:
    run = connected(cpus=2)
    run.create("sb-1")
    queued = SandboxRecord("sb-q", SPEC)
    run.feed(CreateAsked(queued))
    assert run.feed(DeleteAsked("sb-q")) == [Capacity(), Wake("sb-q")]
    assert run.steps("sb-q") == [("delete", "deleted")]
    assert queued.history[-1].reason == "deleted before placement"
    assert run.feed(Placed("sb-q")) == []  # its create wakes and sends nothing
    assert run.held() == 1


def test_a_delete_of_a_lost_sandbox_completes_when_its_host_is_reconciled() -> None:
    run = connected()
    record = run.create("sb-1")
    run.feed(LinkDown("h1", "gone"), at=10.0)
    run.feed(GraceOver("h1", 0), at=40.0)
    assert run.feed(DeleteAsked("sb-1")) == [LockAndRemove("sb-1", cancel_create=False)]
    assert run.feed(RemoveAsked("sb-1")) == []
    assert run.steps("sb-1")[-1] == ("delete", "deleting")
    assert record.history[-1].reason == "delete requested while its host is lost"
    run.feed(LinkUp("mem://h1", welcome(), known="h1"), at=50.0)
    assert run.feed(listing(info("sb-1"))) == [RemoveLeftover("sb-1", "h1")]


def test_a_delete_while_a_create_is_in_flight_cancels_the_create_first() -> None:
    run = connected()
    record = SandboxRecord("sb-1", SPEC)
    run.feed(CreateAsked(record))
    run.feed(Placed("sb-1"))  # its create request is on its way
    assert run.feed(DeleteAsked("sb-1")) == [LockAndRemove("sb-1", cancel_create=True)]
    out = run.feed(Failed("sb-1", "cancelled", cancelled=True))  # the create is cancelled
    assert SendRemove("sb-1", "h1", quiet=True) in out
    record.settled.set()  # the create has finished (the driver's `create_sandbox` does this)
    assert run.feed(RemoveAsked("sb-1")) == [SendRemove("sb-1", "h1")]
    run.feed(Removed("sb-1"))
    assert run.steps("sb-1")[1:] == [
        ("create_failed", "failed"),
        ("delete", "deleting"),
        ("deleted", "deleted"),
    ]
    assert run.held() == 0


def test_a_delete_that_fails_fails_the_sandbox() -> None:
    run = connected()
    record = run.create("sb-1")
    run.feed(RemoveAsked("sb-1"))
    assert run.feed(RemoveFailed("sb-1", "engine said no")) == []
    assert run.steps("sb-1")[-1] == ("fail", "failed")
    assert record.history[-1].reason == "delete failed: engine said no"
    assert run.held() == 1  # its container may still be there


def test_a_delete_while_the_link_is_down_fails_the_sandbox_and_is_refused() -> None:
    run = connected()
    record = run.create("sb-1")
    run.state.hosts["h1"].connection = None
    run.feed(LinkDown("h1", "reset"), at=10.0)
    error = refusal(run.feed(RemoveAsked("sb-1"), at=11.0))
    assert isinstance(error, HostUnavailable)
    assert (
        str(error)
        == "host h1 is reconnecting: its link has been down for 1.0 s (last error: reset)"
    )
    assert run.steps("sb-1")[-2:] == [("delete", "deleting"), ("fail", "failed")]
    assert record.history[-1].reason == f"delete failed: {error}"


def test_a_leftover_of_a_failed_create_is_deleted_with_its_reason() -> None:
    run = connected()
    run.feed(CreateAsked(SandboxRecord("sb-f", SPEC)))
    run.feed(Placed("sb-f"))
    run.feed(Failed("sb-f", "link broke"))
    out = run.feed(RemoveAsked("sb-f", "leftover of a failed create"))
    assert out == [SendRemove("sb-f", "h1")]
    assert run.state.records["sb-f"].history[-1].reason == "leftover of a failed create"


# ---------------------------------------------------------------------------- admin removal


def test_an_admin_removal_deletes_our_record_and_gives_its_room_back() -> None:
    run = connected()
    record = run.create("sb-1")
    assert run.feed(RemovedByAdmin("sb-1")) == [Capacity()]
    assert run.steps("sb-1")[-2:] == [("delete", "deleting"), ("deleted", "deleted")]
    assert [t.reason for t in record.history[-2:]] == ["removed by id", "container removed"]
    assert run.held() == 0
    assert run.feed(RemovedByAdmin("sb-1")) == []  # already deleted
    assert run.feed(RemovedByAdmin("someone-elses")) == []  # not ours: nothing to record


def test_an_admin_removal_of_a_queued_record_takes_it_out_of_the_queue() -> None:
    run = connected(cpus=2)
    run.create("sb-1")
    queued = SandboxRecord("sb-q", SPEC)
    run.feed(CreateAsked(queued))
    assert run.feed(RemovedByAdmin("sb-q")) == [Capacity(), Wake("sb-q")]
    assert run.steps("sb-q") == [("delete", "deleted")]
    assert run.feed(Placed("sb-q")) == []  # its create wakes and sends nothing
    assert run.held() == 1


def test_an_admin_removal_leaves_a_create_in_flight_to_its_outcome() -> None:
    run = connected()
    creating = SandboxRecord("sb-c", SPEC)
    run.feed(CreateAsked(creating))
    run.feed(Placed("sb-c"))
    assert run.feed(RemovedByAdmin("sb-c")) == []
    assert creating.state is S.CREATING and run.held() == 1


def test_an_admin_removal_of_a_deleting_record_gives_its_room_back_only() -> None:
    run = connected()
    record = run.create("sb-1")
    record.fire(E.DELETE, "delete requested")
    assert run.feed(RemovedByAdmin("sb-1")) == [Capacity()]
    assert record.state is S.DELETING and run.held() == 0
