"""The sandbox lifecycle, as one transition table.

Rules:
- A sandbox is in exactly one `SandboxState`. It moves only by firing a `SandboxEvent`, and
  only along a pair listed in `TRANSITIONS`; any other (state, event) pair raises
  `IllegalTransition` naming both. The table is the whole truth: the docs' diagram is drawn
  from it (`state_diagram`).
- `pending`: accepted, waiting for the scheduler. `place` moves it to `creating` (a host was
  chosen). Deleting a pending sandbox goes straight to `deleted`: nothing exists to clean up.
  `fail` covers a request that can no longer be placed (the driver gave up waiting).
- `creating`: the container is being created and started, or restarted. `created` ->
  `running`; `create_failed` -> `failed`; `requeue` -> `pending` when the host's agent
  refused it as full (other programs use the host too): it waits for room again.
- `running`: `stop` (asked) and `expire` (idle or hard timeout) both -> `stopping`; `fail`
  (the container died or the engine refused) -> `failed`.
- `stopping` -> `stopped` on `stopped`, or `failed` on `fail`.
- `stopped`: the container exists but does not run. `start` goes back through `creating`, so
  a restart may fail like a first start. `fail`: the container vanished (found missing when a
  host was reconciled). A restart of a running sandbox is `stop`, `stopped`,
  `start`, `created`; the driver sequences it.
- `delete` is legal from every state that may own a container: `creating`, `running`,
  `stopping`, `stopped`, `failed`, `lost`; the driver cancels any operation in flight, then
  removes the container. `deleting` -> `deleted` on `deleted`, or -> `failed` when the engine
  refuses (a later `delete` retries).
- `lose` (the host is gone) is legal wherever a container lives on a reachable host:
  `creating`, `running`, `stopping`, `stopped`, `deleting`. `failed` is not left by `lose`: a
  failed sandbox only waits to be deleted, wherever its host is.
- `lost`: when the host comes back and is reconciled, `found_running` or `found_stopped` give
  the container's observed state (two events, so each pair has one target); if the container
  is gone, `fail`. A sandbox that was being deleted is deleted again from `lost`.
- `deleted` is terminal: no event leaves it.
- Idempotence is not the table's business: stopping a stopped sandbox is illegal here, and the
  driver decides whether to treat it as a no-op.
- Every end of a sandbox (a step into `stopped`, `deleted`, `failed` or `lost`) carries an
  `EndReason` from a closed set, with the exit code of its init when one is known; a step that
  only finishes an end already given (a removal after a stop) keeps that end's reason.
  `SandboxLifecycle.end` is the step that ended the sandbox, while it is not running.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from ._errors import IllegalTransition


class SandboxState(enum.StrEnum):
    """Where a sandbox is in its life."""

    PENDING = "pending"
    CREATING = "creating"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"
    LOST = "lost"


class EndReason(enum.StrEnum):
    """Why a sandbox ended: a closed set, one value per cause (see docs/events.md)."""

    USER = "user"  # a stop or removal was asked (by its program, or `rock stop`/`rock rm`)
    IDLE = "idle"  # its idle timeout ran out
    LIFETIME = "lifetime"  # its lifetime ran out
    OWNER_GONE = "owner_gone"  # its owner's process ended (a private agent removes it)
    LEASE_EXPIRED = "lease_expired"  # its owner was silent past its lease (a socket agent)
    OOM = "oom"  # the kernel's OOM killer killed its init
    INIT_EXITED = "init_exited"  # its init (main process) ended on its own: see the exit code
    ENGINE_ERROR = "engine_error"  # the engine refused or failed it, or removed it unasked
    HOST_LOST = "host_lost"  # its host stayed unreachable past the grace period


END_STATES: frozenset[SandboxState] = frozenset(
    {SandboxState.STOPPED, SandboxState.DELETED, SandboxState.FAILED, SandboxState.LOST}
)
"""States a sandbox is in once it ended: a step into one carries an `EndReason`."""


class SandboxEvent(enum.StrEnum):
    """Something that happened to a sandbox, or was asked of it."""

    PLACE = "place"
    CREATED = "created"
    CREATE_FAILED = "create_failed"
    START = "start"
    STOP = "stop"
    EXPIRE = "expire"
    STOPPED = "stopped"
    DELETE = "delete"
    DELETED = "deleted"
    FAIL = "fail"
    LOSE = "lose"
    FOUND_RUNNING = "found_running"
    FOUND_STOPPED = "found_stopped"
    REQUEUE = "requeue"


_S = SandboxState
_E = SandboxEvent

TRANSITIONS: Mapping[tuple[SandboxState, SandboxEvent], SandboxState] = MappingProxyType(
    {
        (_S.PENDING, _E.PLACE): _S.CREATING,
        (_S.PENDING, _E.DELETE): _S.DELETED,
        (_S.PENDING, _E.FAIL): _S.FAILED,
        (_S.CREATING, _E.CREATED): _S.RUNNING,
        (_S.CREATING, _E.CREATE_FAILED): _S.FAILED,
        (_S.CREATING, _E.REQUEUE): _S.PENDING,
        (_S.CREATING, _E.DELETE): _S.DELETING,
        (_S.CREATING, _E.LOSE): _S.LOST,
        (_S.RUNNING, _E.STOP): _S.STOPPING,
        (_S.RUNNING, _E.EXPIRE): _S.STOPPING,
        (_S.RUNNING, _E.DELETE): _S.DELETING,
        (_S.RUNNING, _E.FAIL): _S.FAILED,
        (_S.RUNNING, _E.LOSE): _S.LOST,
        (_S.STOPPING, _E.STOPPED): _S.STOPPED,
        (_S.STOPPING, _E.DELETE): _S.DELETING,
        (_S.STOPPING, _E.FAIL): _S.FAILED,
        (_S.STOPPING, _E.LOSE): _S.LOST,
        (_S.STOPPED, _E.START): _S.CREATING,
        (_S.STOPPED, _E.DELETE): _S.DELETING,
        (_S.STOPPED, _E.LOSE): _S.LOST,
        (_S.STOPPED, _E.FAIL): _S.FAILED,
        (_S.DELETING, _E.DELETED): _S.DELETED,
        (_S.DELETING, _E.FAIL): _S.FAILED,
        (_S.DELETING, _E.LOSE): _S.LOST,
        (_S.FAILED, _E.DELETE): _S.DELETING,
        (_S.LOST, _E.FOUND_RUNNING): _S.RUNNING,
        (_S.LOST, _E.FOUND_STOPPED): _S.STOPPED,
        (_S.LOST, _E.FAIL): _S.FAILED,
        (_S.LOST, _E.DELETE): _S.DELETING,
    }
)
"""Every legal (state, event) pair and the state it leads to; see the module's rules."""

# How each event reads in "cannot <verb> a sandbox that is <state>".
_VERBS: Mapping[SandboxEvent, str] = MappingProxyType(
    {
        _E.PLACE: "place",
        _E.CREATED: "mark as created",
        _E.CREATE_FAILED: "mark as failed to create",
        _E.START: "start",
        _E.STOP: "stop",
        _E.EXPIRE: "expire",
        _E.STOPPED: "mark as stopped",
        _E.DELETE: "delete",
        _E.DELETED: "mark as deleted",
        _E.FAIL: "mark as failed",
        _E.LOSE: "mark as lost",
        _E.FOUND_RUNNING: "mark as found running",
        _E.FOUND_STOPPED: "mark as found stopped",
        _E.REQUEUE: "put back in the queue",
    }
)

TERMINAL_STATES: frozenset[SandboxState] = frozenset(
    state for state in SandboxState if not any(s is state for s, _ in TRANSITIONS)
)
"""States that no event leaves."""


def next_state(state: SandboxState, event: SandboxEvent) -> SandboxState:
    """Return the state `event` leads to from `state`, or raise `IllegalTransition`."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(
            f"cannot {_VERBS[event]} a sandbox that is {state.value}"
            f" (event {event.value!r} in state {state.value!r})",
            state=state.value,
            event=event.value,
        ) from None


class Transition(msgspec.Struct, frozen=True, omit_defaults=True):
    """One step of a sandbox's history: which event moved it, from where to where, when, why.

    `end` is set on a step that ended the sandbox (into one of `END_STATES`), with the exit
    code of its init if one is known (`exit_code`); `reason` says it in words.
    """

    from_state: SandboxState
    to_state: SandboxState
    event: SandboxEvent
    at: float
    reason: str = ""
    end: EndReason | None = None
    exit_code: int | None = None


class SandboxLifecycle:
    """One sandbox's current state and the history of how it got there.

    Applies `TRANSITIONS` and nothing else: no clocks (the caller passes `now`), no I/O, and
    no idempotence (firing `stop` on a stopped sandbox raises; the driver decides what to do).
    """

    def __init__(self, state: SandboxState = SandboxState.PENDING) -> None:
        self.state = state
        self.history: list[Transition] = []

    def __repr__(self) -> str:
        return f"<SandboxLifecycle state={self.state.value!r} steps={len(self.history)}>"

    @property
    def is_terminal(self) -> bool:
        """True when no event can move the sandbox any more."""
        return self.state in TERMINAL_STATES

    def can(self, event: SandboxEvent) -> bool:
        """Whether `event` is legal in the current state."""
        return (self.state, event) in TRANSITIONS

    @property
    def end(self) -> Transition | None:
        """The step that ended the sandbox (its `end` reason set), or None while it has not
        ended: pending, creating, running (again), or on its way to an end (stopping)."""
        if self.state not in END_STATES and self.state is not SandboxState.DELETING:
            return None
        for step in reversed(self.history):
            if step.end is not None:
                return step
            if step.to_state is SandboxState.RUNNING:
                return None
        return None

    def fire(
        self,
        event: SandboxEvent,
        now: float,
        reason: str = "",
        end: EndReason | None = None,
        exit_code: int | None = None,
    ) -> Transition:
        """Apply `event` at time `now`, record and return the step; raise `IllegalTransition`.

        A step into an end state without an `end` of its own takes one by its event (see
        `_default_end`).
        """
        target = next_state(self.state, event)
        if target in END_STATES and end is None:
            end, exit_code = self._default_end(event, exit_code)
        step = Transition(self.state, target, event, now, reason, end, exit_code)
        self.state = step.to_state
        self.history.append(step)
        return step

    def _default_end(
        self, event: SandboxEvent, exit_code: int | None
    ) -> tuple[EndReason, int | None]:
        """`lose` is `host_lost`, `fail` and `create_failed` are `engine_error`; any other end
        keeps the end given on the way to it (a stop asked with a reason, then stopped), else
        is `user`'s when a stop or delete was asked since it last ran, else `engine_error`."""
        if event is SandboxEvent.LOSE:
            return EndReason.HOST_LOST, exit_code
        if event in (SandboxEvent.FAIL, SandboxEvent.CREATE_FAILED):
            return EndReason.ENGINE_ERROR, exit_code
        if event in _ASKED:
            return EndReason.USER, exit_code
        for step in reversed(self.history):
            if step.end is not None:
                return step.end, step.exit_code if exit_code is None else exit_code
            if step.event in _ASKED:
                return EndReason.USER, exit_code
            if step.to_state is SandboxState.RUNNING:
                break
        return EndReason.ENGINE_ERROR, exit_code


_ASKED = frozenset({SandboxEvent.STOP, SandboxEvent.DELETE})


def state_diagram() -> str:
    """The lifecycle as a Mermaid ``stateDiagram-v2``, drawn from `TRANSITIONS`.

    Edges come in the order of the enums (source state, then event); events sharing a source
    and a target share one edge. The output is deterministic, so the docs can embed it and a
    test can check they match.
    """
    terminal = [state for state in SandboxState if state in TERMINAL_STATES]
    return mermaid(TRANSITIONS, SandboxState.PENDING, terminal)


def mermaid(
    table: Mapping[tuple[Any, Any], enum.Enum], initial: enum.Enum, terminal: Iterable[enum.Enum]
) -> str:
    """Any transition table as a Mermaid ``stateDiagram-v2`` (see `state_diagram`): one edge
    per (source, target) in the order of the states' and events' enums."""
    states = type(initial)
    events = type(next(iter(table))[1])
    edges: dict[tuple[enum.Enum, enum.Enum], list[str]] = {}
    for source in states:
        for event in events:
            target = table.get((source, event))
            if target is not None:
                edges.setdefault((source, target), []).append(event.value)
    lines = ["stateDiagram-v2", f"    [*] --> {initial.value}"]
    lines += [f"    {s.value} --> {t.value}: {', '.join(ev)}" for (s, t), ev in edges.items()]
    lines += [f"    {state.value} --> [*]" for state in terminal]
    return "\n".join(lines) + "\n"
