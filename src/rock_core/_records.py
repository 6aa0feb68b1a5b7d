"""The cluster's records: one per sandbox (spec, host, lifecycle) and one per host (its link).

Rules:
- Plain state with no I/O of its own: `_cluster_state` moves both, `_cluster` waits on them.
- A record can be made outside an event loop (the sans-IO tests do): its flags make their
  `anyio.Event` only when someone waits.
- A host's `state` moves only through the link table (`_link`), by `Host.fire`.
- Each step of a record goes to its `on_step` hook, if it has one (the cluster's event feed,
  `_event_feed`); the hook must not block or raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from ._connection import AgentConnection
from ._errors import HostUnavailable, RockError, TransportError
from ._link import LinkEvent, LinkState, next_link_state
from ._protocol import SandboxInfo, SandboxSpec
from ._states import (
    TRANSITIONS,
    EndReason,
    SandboxEvent,
    SandboxLifecycle,
    SandboxState,
    Transition,
)

log = logging.getLogger("rock_core")


class Flag:
    """A one-way flag to wait on, settable outside an event loop (an `anyio.Event` made lazily)."""

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        """Raise the flag and wake every waiter."""
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        """Whether the flag is raised."""
        return self._set

    async def wait(self) -> None:
        """Return once the flag is raised."""
        if self._set:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class SandboxRecord:
    """The core's view of one sandbox: spec, host, lifecycle with its full history."""

    def __init__(
        self, sandbox_id: str, spec: SandboxSpec, *, on_step: StepHook | None = None
    ) -> None:
        self.sandbox_id = sandbox_id
        self.spec = spec
        self.host: str | None = None
        self.lifecycle = SandboxLifecycle()
        self.info: SandboxInfo | None = None
        self.placed = Flag()
        self.settled = Flag()  # set when a create finishes, either way
        self.error: RockError | None = None
        self.holds_resources = False  # the scheduler counts this sandbox against its host
        self.chosen_id = False  # the caller named it: a create whose reply was lost may retry
        self.create_scope: anyio.CancelScope | None = None  # the create in flight, if any
        self._lock: anyio.Lock | None = None
        self.on_step = on_step

    @property
    def lock(self) -> anyio.Lock:
        """Held by stop, start and delete: one lifecycle operation at a time per sandbox."""
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    @property
    def creating(self) -> bool:
        """Its create is in flight (or it waits to be placed): stop and start wait for it."""
        state = self.state
        if state is SandboxState.PENDING and not self.settled.is_set():
            return True
        return state in (SandboxState.PENDING, SandboxState.CREATING) and (
            self.create_scope is not None
        )

    @property
    def retryable(self) -> bool:
        """A create with a chosen id failed on a broken link: its container may exist."""
        return (
            self.chosen_id
            and self.state is SandboxState.FAILED
            and isinstance(self.error, TransportError)
        )

    @property
    def state(self) -> SandboxState:
        """The current lifecycle state."""
        return self.lifecycle.state

    @property
    def history(self) -> list[Transition]:
        """Every transition so far, oldest first."""
        return list(self.lifecycle.history)

    @property
    def end(self) -> Transition | None:
        """The step that ended the sandbox (reason, exit code, time), or None while it has not
        ended (`SandboxLifecycle.end`)."""
        return self.lifecycle.end

    def fire(
        self,
        event: SandboxEvent,
        reason: str = "",
        end: EndReason | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Apply a lifecycle event now (an end of the sandbox with its `end` reason)."""
        step = self.lifecycle.fire(event, time.time(), reason, end, exit_code)
        if self.on_step is not None:
            self.on_step(self, step)

    def fire_if(
        self,
        event: SandboxEvent,
        reason: str = "",
        end: EndReason | None = None,
        exit_code: int | None = None,
    ) -> bool:
        """Apply `event` if the current state allows it (an outcome that arrives after
        something else, such as a lost host or a pushed change, already moved the sandbox)."""
        if (self.state, event) not in TRANSITIONS:
            log.debug("sandbox %s: %s ignored in state %s", self.sandbox_id, event, self.state)
            return False
        self.fire(event, reason, end, exit_code)
        return True


StepHook = Callable[[SandboxRecord, Transition], None]
"""Called with a record and each step it takes (`SandboxRecord.on_step`)."""


class Host:
    """One agent of the cluster, connected or not.

    `state` is ``connected``, ``reconnecting`` (the link broke; the core keeps trying, and
    the host takes no new placements) or ``lost`` (it stayed away past the grace period: its
    sandboxes are `lost` and their resources released). A host that comes back is reconciled.
    The states and their moves are the link table's (`_link`).
    """

    def __init__(self, host_id: str, address: str, connection: AgentConnection | None) -> None:
        self.host_id = host_id
        self.address = address
        self.connection = connection
        self.state: str = LinkState.CONNECTED.value  # a `LinkState`'s value (plain in reprs)
        self.down_since: float | None = None  # anyio clock time the link went down
        self.last_error = ""
        self.instance = connection.welcome.instance if connection else ""
        self.generation = 0  # counts connections; a grace timer acts only on its own
        self.drained = False  # asked by the user (`drain_host`), not by a broken link

    def fire(self, event: LinkEvent) -> LinkState:
        """Move the link along its table; return the state it was in (`IllegalTransition`)."""
        before = LinkState(self.state)
        self.state = next_link_state(before, event).value
        return before

    def link(self) -> AgentConnection:
        """The live connection, or `HostUnavailable` while the link is down."""
        if self.connection is None or self.connection.closed:
            raise self._down(anyio.current_time())
        return self.connection

    def unavailable(self, now: float) -> HostUnavailable | None:
        """The `HostUnavailable` to raise at `now` while the link is down (else None)."""
        if self.connection is None or self.connection.closed:
            return self._down(now)
        return None

    def _down(self, now: float) -> HostUnavailable:
        since = "" if self.down_since is None else f" for {now - self.down_since:.1f} s"
        error = f" (last error: {self.last_error})" if self.last_error else ""
        return HostUnavailable(
            f"host {self.host_id} is {self.state}: its link has been down{since}{error}",
            host=self.host_id,
        )


__all__ = ["Flag", "Host", "SandboxRecord", "StepHook"]
