"""A request's inbox on the core's side of an agent link: one reader puts, one caller takes.

Replaces a memory object stream pair per request (two objects, a shared state and a waiter
table each time), which a session command paid for on every round trip.

Rules:
- Unbounded on purpose: output is capped by the agent and byte streams by credit, so the
  connection's reader never blocks on one slow request while others wait behind it.
- `put` never blocks and never fails: a message put after `close` is dropped (a late event
  for a request its caller has left).
- `get` returns the next message in order, or None once the inbox is closed and empty. It
  waits only when the inbox is empty: a message already delivered is taken without a trip
  through the event loop (the wait for the reply is the checkpoint of a request).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class Inbox(Generic[T]):
    """Messages for one request, in order."""

    __slots__ = ("_items", "_wakeup", "closed")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._wakeup: anyio.Event | None = None
        self.closed = False

    def put(self, item: T) -> None:
        """Deliver `item` (dropped if the inbox is closed)."""
        if self.closed:
            return
        self._items.append(item)
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        """No more messages: a waiting `get` returns what is left, then None."""
        self.closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def get(self) -> T | None:
        """The next message, waiting for one; None once closed and empty."""
        items = self._items
        while not items:
            if self.closed:
                return None
            self._wakeup = wakeup = anyio.Event()
            try:
                await wakeup.wait()
            finally:
                self._wakeup = None
        return items.popleft()


__all__ = ["Inbox"]
