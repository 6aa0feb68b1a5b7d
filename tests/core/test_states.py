"""The sandbox lifecycle table: legal steps, illegal ones, history, and the docs built from it."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from rock_core._errors import BadRequest, IllegalTransition
from rock_core._states import (
    END_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    SandboxEvent,
    SandboxLifecycle,
    SandboxState,
    Transition,
    next_state,
    state_diagram,
)

S = SandboxState
E = SandboxEvent
DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"

LEGAL = sorted(TRANSITIONS.items())
ILLEGAL = [(s, e) for s in SandboxState for e in SandboxEvent if (s, e) not in TRANSITIONS]


def test_enum_values_are_the_lowercase_names() -> None:
    assert [s.value for s in SandboxState] == [s.name.lower() for s in SandboxState]
    assert [e.value for e in SandboxEvent] == [e.name.lower() for e in SandboxEvent]
    assert f"{S.RUNNING}" == "running"  # a StrEnum formats as its value


@pytest.mark.parametrize(("pair", "target"), LEGAL, ids=[f"{s}-{e}" for (s, e), _ in LEGAL])
def test_every_legal_transition_moves_and_records(
    pair: tuple[SandboxState, SandboxEvent], target: SandboxState
) -> None:
    state, event = pair
    life = SandboxLifecycle(state)
    assert life.can(event)
    step = life.fire(event, 12.5, reason="because")
    assert step == Transition(state, target, event, 12.5, "because", step.end)
    assert (step.end is not None) == (target in END_STATES)  # every end has its reason
    assert life.state is target
    assert life.history == [step]


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=[f"{s}-{e}" for s, e in ILLEGAL])
def test_every_other_pair_raises_naming_state_and_event(
    state: SandboxState, event: SandboxEvent
) -> None:
    life = SandboxLifecycle(state)
    assert not life.can(event)
    with pytest.raises(IllegalTransition) as info:
        life.fire(event, 1.0)
    message = str(info.value)
    assert message.startswith("cannot ")
    assert message.endswith(f" a sandbox that is {state} (event '{event}' in state '{state}')")
    assert info.value.details == {"state": state.value, "event": event.value}
    assert life.state is state
    assert life.history == []


@pytest.mark.parametrize(
    ("state", "event", "message"),
    [
        (S.DELETED, E.STOP, "cannot stop a sandbox that is deleted"),
        (S.STOPPED, E.STOP, "cannot stop a sandbox that is stopped"),
        (S.RUNNING, E.START, "cannot start a sandbox that is running"),
        (S.DELETING, E.DELETE, "cannot delete a sandbox that is deleting"),
        (S.PENDING, E.CREATED, "cannot mark as created a sandbox that is pending"),
        (S.FAILED, E.FOUND_RUNNING, "cannot mark as found running a sandbox that is failed"),
    ],
)
def test_illegal_messages_read_as_sentences(
    state: SandboxState, event: SandboxEvent, message: str
) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(state, event)
    assert str(info.value) == f"{message} (event '{event}' in state '{state}')"
    assert isinstance(info.value, BadRequest)
    assert info.value.code == "illegal_transition"


def test_next_state_agrees_with_the_table() -> None:
    assert next_state(S.PENDING, E.PLACE) is S.CREATING
    assert next_state(S.LOST, E.FOUND_STOPPED) is S.STOPPED


def test_full_life_records_history_with_times_and_reasons() -> None:
    life = SandboxLifecycle()
    assert life.state is S.PENDING
    script = [
        (E.PLACE, 1.0, "host h1"),
        (E.CREATED, 2.0, ""),
        (E.STOP, 3.0, "user"),
        (E.STOPPED, 4.0, ""),
        (E.START, 5.0, "user"),
        (E.CREATED, 6.0, ""),
        (E.EXPIRE, 7.0, "idle 300s"),
        (E.STOPPED, 8.0, ""),
        (E.DELETE, 9.0, "auto-delete"),
        (E.DELETED, 10.0, ""),
    ]
    for event, now, reason in script:
        life.fire(event, now, reason)
    assert [(t.event, t.at, t.reason) for t in life.history] == script
    assert [t.to_state for t in life.history] == [
        S.CREATING,
        S.RUNNING,
        S.STOPPING,
        S.STOPPED,
        S.CREATING,
        S.RUNNING,
        S.STOPPING,
        S.STOPPED,
        S.DELETING,
        S.DELETED,
    ]
    # Each step starts where the previous one ended.
    assert [t.from_state for t in life.history[1:]] == [t.to_state for t in life.history[:-1]]
    assert life.is_terminal


@pytest.mark.parametrize(
    ("script", "end"),
    [
        ([E.PLACE, E.CREATE_FAILED, E.DELETE, E.DELETED], S.DELETED),
        ([E.PLACE, E.CREATED, E.FAIL], S.FAILED),
        ([E.PLACE, E.CREATED, E.LOSE, E.FOUND_RUNNING], S.RUNNING),
        ([E.PLACE, E.CREATED, E.STOP, E.LOSE, E.FOUND_STOPPED], S.STOPPED),
        ([E.PLACE, E.CREATED, E.LOSE, E.FAIL, E.DELETE, E.DELETED], S.DELETED),
        ([E.PLACE, E.CREATED, E.DELETE, E.LOSE, E.DELETE, E.DELETED], S.DELETED),
        ([E.PLACE, E.CREATED, E.DELETE, E.FAIL, E.DELETE, E.DELETED], S.DELETED),
        ([E.PLACE, E.DELETE, E.DELETED], S.DELETED),
        ([E.DELETE], S.DELETED),
        ([E.FAIL, E.DELETE, E.DELETED], S.DELETED),
    ],
)
def test_failure_and_loss_paths(script: list[SandboxEvent], end: SandboxState) -> None:
    life = SandboxLifecycle()
    for i, event in enumerate(script):
        life.fire(event, float(i))
    assert life.state is end


def test_deleted_is_the_only_terminal_state() -> None:
    assert TERMINAL_STATES == {S.DELETED}
    assert SandboxLifecycle(S.DELETED).is_terminal
    assert not any(SandboxLifecycle(s).is_terminal for s in SandboxState if s is not S.DELETED)


def _reachable(start: SandboxState) -> set[SandboxState]:
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_is_reachable_and_every_state_can_end_deleted() -> None:
    assert _reachable(S.PENDING) == set(SandboxState)
    assert all(S.DELETED in _reachable(s) for s in SandboxState)
    assert {e for _, e in TRANSITIONS} == set(SandboxEvent)


def test_delete_and_lose_are_legal_exactly_where_the_rules_say() -> None:
    assert {s for s, e in TRANSITIONS if e is E.DELETE} == set(SandboxState) - {
        S.DELETING,
        S.DELETED,
    }
    # `lose` applies where a container lives on a host we were managing.
    assert {s for s, e in TRANSITIONS if e is E.LOSE} == {
        S.CREATING,
        S.RUNNING,
        S.STOPPING,
        S.STOPPED,
        S.DELETING,
    }


def test_transition_goes_over_the_wire() -> None:
    step = Transition(S.RUNNING, S.STOPPING, E.EXPIRE, 3.25, "idle")
    encoded = msgspec.json.encode(step)
    assert encoded == (
        b'{"from_state":"running","to_state":"stopping","event":"expire","at":3.25,"reason":"idle"}'
    )
    assert msgspec.json.decode(encoded, type=Transition) == step
    with pytest.raises(AttributeError):
        step.reason = "changed"  # type: ignore[misc]


def test_state_diagram_is_drawn_from_the_table() -> None:
    diagram = state_diagram()
    assert diagram == state_diagram()
    lines = diagram.splitlines()
    assert lines[:2] == ["stateDiagram-v2", "    [*] --> pending"]
    assert lines[-1] == "    deleted --> [*]"
    edges = set()
    for line in lines[2:-1]:
        match = re.fullmatch(r"    (\w+) --> (\w+): ([\w, ]+)", line)
        assert match, line
        for event in match[3].split(", "):
            edges.add((S(match[1]), E(event), S(match[2])))
    assert edges == {(s, e, t) for (s, e), t in TRANSITIONS.items()}
    assert "    running --> stopping: stop, expire" in lines


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_doc_embeds_the_current_diagram() -> None:
    match = re.search(
        r"<!-- state-diagram:begin -->\n(.*?)<!-- state-diagram:end -->", _doc(), re.DOTALL
    )
    assert match, "docs/lifecycle.md lacks the state-diagram markers"
    assert match[1] == f"```mermaid\n{state_diagram()}```\n"


def test_doc_event_table_matches_the_table() -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| `(\w+)` \|", _doc(), re.MULTILINE)
    documented = {
        (S(source), E(event), S(target))
        for event, sources, target in rows
        for source in re.findall(r"`(\w+)`", sources)
    }
    assert documented == {(s, e, t) for (s, e), t in TRANSITIONS.items()}


def test_doc_explains_every_state() -> None:
    explained = set(re.findall(r"^\| `(\w+)` \| [^|`]+\|$", _doc(), re.MULTILINE))
    assert explained == {s.value for s in SandboxState}
