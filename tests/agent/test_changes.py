"""The causes of engine events and the removals an owner hears of, as plain calls."""

from __future__ import annotations

from rock_agent._changes import CAUSE_TTL, REMEMBER, Causes, Removals, change_of
from rock_agent._runtime import EngineEvent


def event(action: str, *, sandbox_id: str = "sb", exit_code: int | None = None) -> EngineEvent:
    return EngineEvent(
        action=action,  # type: ignore[arg-type]
        sandbox_id=sandbox_id,
        container_id="c1",
        owner="me",
        owner_uid=0,
        time=7.0,
        exit_code=exit_code,
    )


def test_a_noted_change_is_taken_by_its_event_once() -> None:
    causes = Causes()
    causes.note("sb", "request", "stopped at the request of me", "die", now=100.0)
    assert causes.take("sb", "die", now=101.0) == ("request", "stopped at the request of me")
    assert causes.take("sb", "die", now=102.0) == ("engine", "")


def test_another_event_is_the_engines_and_keeps_the_note() -> None:
    causes = Causes()
    causes.note("sb", "request", "started", "start", now=0.0)
    assert causes.take("sb", "die", now=1.0) == ("engine", "")
    assert causes.take("sb", "start", now=2.0) == ("request", "started")


def test_the_stop_before_a_removal_carries_the_removals_cause() -> None:
    causes = Causes()
    causes.note("sb", "idle", "idle for 60 s", "destroy", now=0.0)
    assert causes.take("sb", "die", now=1.0) == (
        "idle",
        "idle for 60 s; deleting it (on_expire='delete')",
    )
    assert causes.take("sb", "destroy", now=2.0) == ("idle", "idle for 60 s")


def test_a_note_whose_event_never_came_expires() -> None:
    causes = Causes()
    causes.note("sb", "request", "stopped", "die", now=0.0)
    assert causes.take("sb", "die", now=CAUSE_TTL + 1) == ("engine", "")
    causes.note("sb", "request", "stopped", "die", now=0.0)
    causes.drop("sb")
    assert causes.take("sb", "die", now=1.0) == ("engine", "")


def test_changes_say_what_happened_and_why() -> None:
    started = change_of(event("start"), "engine", "")
    assert (started.state, started.cause, started.reason, started.at) == (
        "running",
        "engine",
        "started by another program",
        7.0,
    )
    died = change_of(event("die", exit_code=137), "engine", "")
    assert (died.state, died.reason) == (
        "stopped",
        "the container stopped (exit code 137), not at its owner's request",
    )
    unknown = change_of(event("die"), "engine", "")
    assert unknown.reason == "the container stopped (exit code ?), not at its owner's request"
    gone = change_of(event("destroy"), "request", "deleted at the request of me")
    assert (gone.state, gone.cause, gone.reason) == (
        "deleted",
        "request",
        "deleted at the request of me",
    )


def test_removals_keep_the_latest_per_owner_oldest_first() -> None:
    removals = Removals()
    for n in range(REMEMBER + 2):
        removals.add("me", change_of(event("destroy", sandbox_id=f"sb-{n}"), "engine", ""))
    removals.add("you", change_of(event("destroy", sandbox_id="x"), "engine", ""))
    mine = removals.of("me")
    assert len(mine) == REMEMBER
    assert (mine[0].sandbox_id, mine[-1].sandbox_id) == ("sb-2", f"sb-{REMEMBER + 1}")
    removals.forget_owner("me")
    assert removals.of("me") == []
    assert [c.sandbox_id for c in removals.of("you")] == ["x"]
