"""The pause policy as plain calls with `now` passed in (`_pause_policy.PauseTable`)."""

from __future__ import annotations

from rock_agent._pause_policy import PauseTable


def test_an_idle_sandbox_is_due_once_after_pause_after() -> None:
    table = PauseTable()
    table.track("a", 10.0, now=100.0)
    assert table.next_deadline() == 110.0
    assert table.due(109.9) == []
    assert table.due(110.0) == ["a"]
    assert table.due(200.0) == []  # handed out once
    assert table.still_due("a", 110.0)
    table.set_paused("a", True, 110.5)
    assert table.is_paused("a")
    assert table.next_deadline() is None  # a paused sandbox is not paused again


def test_a_use_in_flight_holds_off_the_pause_and_its_end_restarts_the_clock() -> None:
    table = PauseTable()
    table.track("a", 10.0, now=0.0)
    table.use_began("a", 5.0)
    assert table.due(100.0) == []
    table.use_ended("a", 100.0)
    assert table.due(109.0) == []
    assert table.due(110.0) == ["a"]


def test_a_use_that_begins_after_the_handout_releases_it() -> None:
    table = PauseTable()
    table.track("a", 10.0, now=0.0)
    assert table.due(10.0) == ["a"]
    table.use_began("a", 10.5)
    assert not table.still_due("a", 10.5)
    table.release("a")
    table.use_ended("a", 11.0)
    assert table.due(21.0) == ["a"]


def test_a_resume_restarts_the_clock_and_older_reports_are_void() -> None:
    table = PauseTable()
    table.track("a", 10.0, now=0.0)
    table.set_paused("a", True, 10.0)
    table.set_paused("a", False, 50.0)
    table.set_paused("a", True, 40.0)  # the engine's event of an earlier pause, late
    assert not table.is_paused("a")
    assert table.due(59.0) == []
    assert table.due(60.0) == ["a"]


def test_a_stopped_sandbox_is_not_paused_and_a_start_restarts_the_clock() -> None:
    table = PauseTable()
    table.track("a", 10.0, now=0.0)
    table.set_paused("a", True, 10.0)
    table.stopped("a", 20.0)
    assert not table.is_paused("a")
    assert table.due(1000.0) == []
    table.started("a", 1000.0)
    assert table.due(1010.0) == ["a"]


def test_a_refused_pause_is_due_again_after_the_retry() -> None:
    table = PauseTable(retry=5.0)
    table.track("a", 10.0, now=0.0)
    assert table.due(10.0) == ["a"]
    table.failed("a", 10.0)
    assert table.due(14.0) == []
    assert table.due(15.0) == ["a"]


def test_untracked_sandboxes_are_known_paused_and_forgotten() -> None:
    table = PauseTable()
    table.set_paused("by-hand", True, 1.0)  # paused by another agent: no policy here
    assert table.is_paused("by-hand") and "by-hand" not in table
    table.use_began("by-hand", 2.0)  # untracked uses are ignored
    assert table.due(1e9) == []
    table.forget("by-hand")
    assert not table.is_paused("by-hand")


def test_earliest_deadline_first() -> None:
    table = PauseTable()
    table.track("late", 30.0, now=0.0)
    table.track("early", 10.0, now=0.0)
    assert table.due(100.0) == ["early", "late"]
