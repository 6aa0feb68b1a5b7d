"""The cluster's lifecycle events, pushed to subscribers: `async for ev in cluster.events()`.

Rules:
- Every step of every record of the cluster (`SandboxRecord.on_step`) becomes one
  `LifecycleEvent`, given to every subscriber open at that moment, in the order the steps were
  taken. Publishing is synchronous and never waits: a subscriber is a bounded buffer.
- A subscriber whose buffer is full loses its oldest event, not the new one; the next event it
  reads says how many it lost just before it (`missed`), so a slow reader knows it has a gap.
- A subscription exists from the call of `events()` (nothing that happens after it is lost,
  even before the first `async for` step) until the cluster closes (the iteration then ends,
  after what is buffered), `aclose()`, or the subscription object is dropped (a loop left with
  `break`): the feed holds subscribers weakly, so nothing stays behind. A subscriber cancelled
  while it waits has no task left; it is dropped with the object (or at the cluster's close).
- No task and no clock of its own: subscribers wait on an `anyio.Event` made when they wait.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Protocol

import anyio
import msgspec

from ._errors import BadRequest
from ._records import SandboxRecord
from ._states import EndReason, SandboxEvent, SandboxState, Transition

DEFAULT_BUFFER = 1000  # events a subscriber holds before it loses the oldest


class LifecycleEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step of one sandbox, as a subscriber of `Cluster.events()` sees it.

    `state` is where the step led, `event` the lifecycle event that moved it, `end` the reason
    of an end (set on a step into stopped, deleted, failed or lost) with the `exit_code` of its
    init if known, `at` the unix time of the step, `host` the sandbox's host (None before
    placement). `missed` counts the events this subscriber lost just before this one because
    its buffer was full.
    """

    sandbox_id: str
    state: SandboxState
    event: SandboxEvent
    reason: str
    at: float
    host: str | None
    end: EndReason | None = None
    exit_code: int | None = None
    missed: int = 0


class Subscription:
    """One subscriber of an `EventFeed`: an async iterator of `LifecycleEvent`s."""

    def __init__(self, feed: EventFeed, buffer: int) -> None:
        self._feed = feed
        self._events: deque[LifecycleEvent] = deque()
        self._buffer = buffer
        self._closed = False
        self._wake: anyio.Event | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LifecycleEvent:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()
        return self._events.popleft()

    async def aclose(self) -> None:
        """Stop receiving events; what was buffered is dropped."""
        self.close()
        self._events.clear()

    def close(self) -> None:
        """No more events will come: the iteration ends once the buffer is read."""
        self._closed = True
        self._feed._subscribers.discard(self)
        self._notify()

    def put(self, event: LifecycleEvent) -> None:
        """Add an event; if the buffer is full, the oldest is lost and the event now first in
        line counts it (with what that one counted)."""
        if self._closed:
            return
        if len(self._events) >= self._buffer:
            lost = 1 + self._events.popleft().missed
            if self._events:
                first = self._events[0]
                self._events[0] = msgspec.structs.replace(first, missed=first.missed + lost)
            else:
                event = msgspec.structs.replace(event, missed=event.missed + lost)
        self._events.append(event)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None


class EventFeed:
    """Every subscriber of one cluster (see the module's rules)."""

    def __init__(self) -> None:
        self._subscribers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self.closed = False

    def subscribe(self, buffer: int = DEFAULT_BUFFER) -> Subscription:
        """A new subscriber holding up to `buffer` events; `BadRequest` for a buffer under 1."""
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise BadRequest(f"an event buffer holds at least 1 event, not {buffer!r}")
        subscription = Subscription(self, buffer)
        if self.closed:
            subscription.close()
        else:
            self._subscribers.add(subscription)
        return subscription

    def publish(self, record: SandboxRecord, step: Transition) -> None:
        """A record took `step`: every open subscriber gets it (a `StepHook`)."""
        if not self._subscribers:
            return
        event = LifecycleEvent(
            sandbox_id=record.sandbox_id,
            state=step.to_state,
            event=step.event,
            reason=step.reason,
            at=step.at,
            host=record.host,
            end=step.end,
            exit_code=step.exit_code,
        )
        for subscription in list(self._subscribers):
            subscription.put(event)

    def close(self) -> None:
        """The cluster closed: every subscriber's iteration ends after what it holds."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription.close()

    @property
    def subscribers(self) -> int:
        """How many subscribers are open."""
        return len(self._subscribers)


class _HasFeed(Protocol):
    feed: EventFeed


class _HasState(Protocol):
    @property
    def state(self) -> _HasFeed: ...


class Subscribable:
    """What gives a cluster its `events()`: the feed of its state's records (`ClusterState`)."""

    def events(self: _HasState, *, buffer: int = DEFAULT_BUFFER) -> Subscription:
        """Every step of every sandbox of this cluster from now on, as `LifecycleEvent`s:
        ``async for ev in cluster.events()``. The iteration ends when the cluster closes; a
        reader that falls `buffer` events behind loses the oldest (`LifecycleEvent.missed`).
        `BadRequest` for a buffer under 1. See docs/events.md."""
        return self.state.feed.subscribe(buffer)


__all__ = ["DEFAULT_BUFFER", "EventFeed", "LifecycleEvent", "Subscribable", "Subscription"]
