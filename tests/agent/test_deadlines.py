"""The agent's deadline table, as plain synchronous rules (virtual time)."""

from __future__ import annotations

import math

from rock_agent._deadlines import DeadlineTable, Due, Timeouts, project
from rock_core import SandboxSpec


def table_with(timeouts: Timeouts, *, now: float = 100.0, running: bool = True) -> DeadlineTable:
    table = DeadlineTable(retry=5.0)
    table.track("sb", "me", timeouts, now=now, running=running, started_at=now)
    return table


def test_idle_timeout_runs_from_the_last_use() -> None:
    table = table_with(Timeouts(idle=10))
    assert table.next_deadline() == 110
    assert table.due(109.9) == []
    table.touch("sb", 105)
    assert table.next_deadline() == 115
    assert table.due(114.9) == []
    assert table.due(115) == [
        Due("sb", "stop", "idle", "expired: idle for 10 s (idle timeout 10 s)")
    ]
    assert table.due(200) == [], "handed out once until the driver reports"


def test_a_use_in_flight_holds_the_idle_timeout_then_it_runs_from_its_end() -> None:
    table = table_with(Timeouts(idle=10))
    table.use_began("sb", 101)
    assert table.next_deadline() is None
    assert table.due(500) == []
    assert table.view("sb").in_use  # type: ignore[union-attr]
    table.use_ended("sb", 502)
    assert table.next_deadline() == 512
    assert [d.cause for d in table.due(512)] == ["idle"]


def test_lifetime_counts_from_the_latest_start_and_ignores_uses() -> None:
    table = table_with(Timeouts(lifetime=30, on_expire="delete"))
    table.touch("sb", 129)
    assert table.due(129.9) == []
    (due,) = table.due(130)
    assert (due.action, due.cause) == ("delete", "lifetime")
    assert due.reason == "expired: ran for 30 s (lifetime 30 s)"
    table.stopped("sb", 131, "lifetime")
    table.started("sb", 200)
    assert table.next_deadline() == 230


def test_the_earlier_limit_wins() -> None:
    table = table_with(Timeouts(idle=50, lifetime=20))
    assert [d.cause for d in table.due(120)] == ["lifetime"]
    table = table_with(Timeouts(idle=5, lifetime=20))
    assert [d.cause for d in table.due(105)] == ["idle"]


def test_auto_delete_runs_from_any_stop() -> None:
    table = table_with(Timeouts(idle=10, auto_delete=60))
    table.stopped("sb", 103, "request")
    assert table.next_deadline() == 163, "no idle or lifetime deadline while stopped"
    view = table.view("sb")
    assert view is not None
    assert (view.stopped_at, view.delete_at, view.idle_at, view.stop_cause) == (
        103,
        163,
        None,
        "request",
    )
    assert table.due(162) == []
    assert table.due(163) == [
        Due("sb", "delete", "auto_delete", "auto-delete 60 s after it stopped")
    ]


def test_a_restart_clears_the_auto_delete_and_restarts_the_clocks() -> None:
    table = table_with(Timeouts(idle=10, lifetime=100, auto_delete=5))
    table.stopped("sb", 104)
    table.started("sb", 106)
    view = table.view("sb")
    assert view is not None
    assert (view.delete_at, view.idle_at, view.lifetime_at, view.stop_cause) == (
        None,
        116,
        206,
        "",
    )


def test_no_limits_means_nothing_is_ever_due() -> None:
    table = table_with(Timeouts())
    assert table.next_deadline() is None
    assert table.due(1e12) == []
    table.stopped("sb", 101)
    assert table.due(1e12) == []


def test_a_failed_action_is_due_again_after_the_retry_delay() -> None:
    table = table_with(Timeouts(idle=1))
    assert len(table.due(101)) == 1
    table.failed("sb", 101.5)
    assert table.due(106.4) == []
    assert table.next_deadline() == 106.5
    assert len(table.due(106.5)) == 1


def test_the_driver_reporting_the_stop_ends_the_hand_out() -> None:
    table = table_with(Timeouts(idle=1, auto_delete=2))
    assert [d.action for d in table.due(101)] == ["stop"]
    table.stopped("sb", 101.2, "idle")
    assert [d.action for d in table.due(103.2)] == ["delete"]
    table.forget("sb")
    assert "sb" not in table and len(table) == 0
    assert table.due(1e9) == [] and table.next_deadline() is None


def test_engine_events_older_than_the_latest_change_are_ignored() -> None:
    table = table_with(Timeouts(lifetime=10))
    table.stopped("sb", 110, "lifetime")
    table.started("sb", 120)
    table.stopped("sb", 111)  # a replayed event from before the restart
    view = table.view("sb")
    assert view is not None and view.stopped_at is None and view.started_at == 120
    table.started("sb", 115)  # and a replayed start
    assert table.view("sb").started_at == 120  # type: ignore[union-attr]


def test_a_second_report_of_a_stop_only_adds_its_cause() -> None:
    table = table_with(Timeouts(auto_delete=10))
    table.stopped("sb", 105)
    table.stopped("sb", 104, "request")  # the engine's event, earlier than our own report
    view = table.view("sb")
    assert view is not None and (view.stopped_at, view.stop_cause) == (105, "request")


def test_changing_timeouts_applies_at_once() -> None:
    table = table_with(Timeouts(idle=100))
    new = table.change("sb", idle=5, lifetime=50, on_expire="delete", auto_delete=7)
    assert new == Timeouts(idle=5, lifetime=50, on_expire="delete", auto_delete=7)
    assert table.next_deadline() == 105
    assert table.change("sb") == new, "None and empty leave everything"
    table.change("sb", idle=math.inf)
    assert table.timeouts("sb") == Timeouts(lifetime=50, on_expire="delete", auto_delete=7)
    assert table.next_deadline() == 150
    table.change("sb", lifetime=1)  # moved into the past: due at once
    assert [(d.action, d.cause) for d in table.due(101)] == [("delete", "lifetime")]


def test_timeouts_from_a_spec_keep_infinity_as_no_limit() -> None:
    spec = SandboxSpec(image="i", idle_timeout=3, lifetime=math.inf, auto_delete_after=9)
    assert Timeouts.from_spec(spec) == Timeouts(idle=3, auto_delete=9)
    assert Timeouts.from_spec(spec).limited and not Timeouts().limited


def test_due_actions_come_earliest_deadline_first() -> None:
    table = DeadlineTable()
    table.track("late", "me", Timeouts(idle=9), now=0, running=True, started_at=0)
    table.track("early", "me", Timeouts(lifetime=3), now=0, running=True, started_at=0)
    table.track("off", "you", Timeouts(), now=0, running=True, started_at=0)
    assert [d.sandbox_id for d in table.due(10)] == ["early", "late"]
    assert table.owner("off") == "you" and table.owner("nope") is None


def test_a_sandbox_found_stopped_is_due_from_its_stop_time() -> None:
    table = DeadlineTable()
    table.track(
        "sb", "me", Timeouts(auto_delete=10), now=500, running=False, started_at=0, stopped_at=480
    )
    assert table.next_deadline() == 490
    assert [d.cause for d in table.due(500)] == ["auto_delete"]


def test_project_shows_what_another_agent_keeps() -> None:
    view = project(
        Timeouts(idle=10, lifetime=60),
        running=True,
        started_at=100,
        stopped_at=None,
        last_used=130,
        in_use=True,
    )
    assert (view.idle_at, view.lifetime_at, view.delete_at, view.in_use) == (140, 160, None, True)
    unknown = project(
        Timeouts(idle=10), running=True, started_at=100, stopped_at=None, last_used=None
    )
    assert unknown.idle_at is None and unknown.idle_timeout == 10
