"""The engine's event feed of a `FakeRuntime`: its sandboxes' starts, dies and removals.

Rules:
- Events are kept in the order they were added, with times that never go backwards (the
  clock may), so a reader from `since` gets every later event, in order, as `DockerRuntime`'s
  event stream gives them.
- A reader that has read everything waits for the next event, or for any of the `watched`
  waits the runtime gives it to end (a sandbox's main process ending on its own), and then
  lets the runtime `settle` what changed (which may add events) before it reads on. The
  feed itself knows nothing of sandboxes beyond their labels and ids.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import anyio

from ._labels import LABEL_OWNER, owner_uid
from ._runtime import EngineEvent, EventAction

Wait = Callable[[], Awaitable[None]]


class FakeEventFeed:
    """Every event of one fake runtime, and the readers waiting for more (see the rules)."""

    def __init__(self, default_uid: int) -> None:
        self._default_uid = default_uid
        self._events: list[EngineEvent] = []
        self._added: anyio.Event | None = None  # made lazily: needs an event loop

    def add(
        self,
        action: EventAction,
        *,
        sandbox_id: str,
        container_id: str,
        labels: dict[str, str],
        exit_code: int | None = None,
    ) -> None:
        """A change of one sandbox, now; wakes every waiting reader."""
        last = self._events[-1].time if self._events else 0.0
        self._events.append(
            EngineEvent(
                action=action,
                sandbox_id=sandbox_id,
                container_id=container_id,
                owner=labels.get(LABEL_OWNER, ""),
                owner_uid=owner_uid(labels, self._default_uid),
                time=max(last, time.time()),
                exit_code=exit_code,
            )
        )
        if self._added is not None:
            self._added.set()
            self._added = None

    async def read(
        self, since: float, settle: Wait, watched: Callable[[], Iterable[Wait]]
    ) -> AsyncIterator[EngineEvent]:
        """Every event at or after `since`, then new ones as they happen (never ends)."""
        seen = 0
        while True:
            await settle()
            while seen < len(self._events):
                event = self._events[seen]
                seen += 1
                if event.time >= since:
                    yield event
            await self._next_change(watched())

    async def _next_change(self, watched: Iterable[Wait]) -> None:
        """Wait for a new event or for one of `watched` to end."""
        if self._added is None:
            self._added = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def first(wait: Wait) -> None:
                await wait()
                tg.cancel_scope.cancel()

            for wait in [self._added.wait, *watched]:
                tg.start_soon(first, wait)


__all__ = ["FakeEventFeed"]
