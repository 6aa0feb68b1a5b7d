"""The host link's transition table (`_link`): legal moves, typed refusals, the drawn diagram."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rock_core import IllegalTransition
from rock_core._link import (
    LINK_TRANSITIONS,
    LinkEvent,
    LinkState,
    link_diagram,
    next_link_state,
)
from rock_core._records import Host

L = LinkState
V = LinkEvent
DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def test_the_table_says_where_each_event_leads() -> None:
    assert next_link_state(L.CONNECTED, V.DOWN) is L.RECONNECTING
    assert next_link_state(L.RECONNECTING, V.DOWN) is L.RECONNECTING  # a reconnect failed
    assert next_link_state(L.RECONNECTING, V.UP) is L.CONNECTED
    assert next_link_state(L.RECONNECTING, V.GRACE_OVER) is L.LOST
    assert next_link_state(L.LOST, V.UP) is L.CONNECTED
    assert all(next_link_state(state, V.DRAIN) is state for state in LinkState)


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in LinkState for e in LinkEvent if (s, e) not in LINK_TRANSITIONS],
)
def test_every_other_pair_is_refused_naming_both(state: LinkState, event: LinkEvent) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_link_state(state, event)
    assert str(info.value) == (
        f"a host link that is {state.value} cannot take {event.value!r}"
        f" (event {event.value!r} in state {state.value!r})"
    )
    assert info.value.details == {"state": state.value, "event": event.value}


def test_the_refused_pairs_are_the_ones_that_mean_a_bug() -> None:
    missing = {(s, e) for s in LinkState for e in LinkEvent} - set(LINK_TRANSITIONS)
    assert missing == {
        (L.CONNECTED, V.UP),  # a second link to a connected host
        (L.CONNECTED, V.GRACE_OVER),  # a stale timer: the cluster state drops those
        (L.LOST, V.GRACE_OVER),
    }


def test_a_host_moves_only_through_the_table() -> None:
    host = Host("h1", "memory", None)
    assert host.state == L.CONNECTED
    assert host.fire(V.DOWN) is L.CONNECTED  # returns where it was
    assert host.state == L.RECONNECTING
    host.fire(V.UP)
    with pytest.raises(IllegalTransition, match=r"^a host link that is connected cannot take 'up'"):
        host.fire(V.UP)
    assert host.state == L.CONNECTED


def test_the_diagram_is_drawn_from_the_table() -> None:
    lines = link_diagram().splitlines()
    assert lines[:2] == ["stateDiagram-v2", "    [*] --> connected"]
    edges = set()
    for line in lines[2:]:
        match = re.fullmatch(r"    (\w+) --> (\w+): ([\w, ]+)", line)
        assert match, line
        for event in match[3].split(", "):
            edges.add((L(match[1]), V(event), L(match[2])))
    assert edges == {(s, e, t) for (s, e), t in LINK_TRANSITIONS.items()}
    assert "    reconnecting --> reconnecting: down, drain" in lines


def test_the_docs_embed_the_current_diagram() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- link-diagram:begin -->\n(.*?)<!-- link-diagram:end -->", text, re.S)
    assert match, "docs/lifecycle.md lacks the link-diagram markers"
    assert match[1] == f"```mermaid\n{link_diagram()}```\n"
