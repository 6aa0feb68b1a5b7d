"""The link to one host, as a second transition table (the sandbox's is `_states`).

Rules:
- A host's link is in exactly one `LinkState`. It moves only by a `LinkEvent`, and only along
  a pair listed in `LINK_TRANSITIONS`; any other (state, event) pair raises
  `IllegalTransition` naming both. The docs' diagram is drawn from the table (`link_diagram`).
- A host joins the cluster `connected` (its first link came up).
- `connected`: `down` (the link broke or stopped answering pings) -> `reconnecting`: the host
  takes no new placements and its grace period starts. `drain` (asked by the user) keeps it
  `connected`.
- `reconnecting`: `up` (a reconnect succeeded) -> `connected`; `down` (another attempt failed)
  stays; `grace_over` (the grace period of this very outage ended) -> `lost`: the host leaves
  the scheduler and its sandboxes are `lost`.
- `lost`: `up` -> `connected` (the host is reconciled); `down` stays.
- `drain` is legal in every state: it records the user's wish, applied while connected.
- A grace timer of an earlier outage is not an event: the cluster state drops it before it
  reaches the table (see `_cluster_state`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from ._errors import IllegalTransition
from ._states import mermaid


class LinkState(enum.StrEnum):
    """Where the link to a host is."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    LOST = "lost"


class LinkEvent(enum.StrEnum):
    """Something that happened to a host's link, or was asked of the host."""

    UP = "up"
    DOWN = "down"
    GRACE_OVER = "grace_over"
    DRAIN = "drain"


_L = LinkState
_V = LinkEvent

LINK_TRANSITIONS: Mapping[tuple[LinkState, LinkEvent], LinkState] = MappingProxyType(
    {
        (_L.CONNECTED, _V.DOWN): _L.RECONNECTING,
        (_L.CONNECTED, _V.DRAIN): _L.CONNECTED,
        (_L.RECONNECTING, _V.UP): _L.CONNECTED,
        (_L.RECONNECTING, _V.DOWN): _L.RECONNECTING,
        (_L.RECONNECTING, _V.GRACE_OVER): _L.LOST,
        (_L.RECONNECTING, _V.DRAIN): _L.RECONNECTING,
        (_L.LOST, _V.UP): _L.CONNECTED,
        (_L.LOST, _V.DOWN): _L.LOST,
        (_L.LOST, _V.DRAIN): _L.LOST,
    }
)
"""Every legal (state, event) pair of a host's link and the state it leads to."""


def next_link_state(state: LinkState, event: LinkEvent) -> LinkState:
    """Return the state `event` leads to from `state`, or raise `IllegalTransition`."""
    try:
        return LINK_TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(
            f"a host link that is {state.value} cannot take {event.value!r}"
            f" (event {event.value!r} in state {state.value!r})",
            state=state.value,
            event=event.value,
        ) from None


def link_diagram() -> str:
    """The host link as a Mermaid ``stateDiagram-v2``, drawn from `LINK_TRANSITIONS` as
    `_states.state_diagram` draws the sandbox's; the docs embed it and a test checks they match.
    """
    return mermaid(LINK_TRANSITIONS, LinkState.CONNECTED, ())


__all__ = ["LINK_TRANSITIONS", "LinkEvent", "LinkState", "link_diagram", "next_link_state"]
