"""An asyncio event loop in virtual time, twin of trio's `MockClock(autojump_threshold=0)`.

Rules:
- `time()` is virtual: it starts at 0.0 and moves only when the loop jumps. Every reader of time
  on asyncio (`loop.call_later`, `asyncio.sleep`, `anyio.current_time`, anyio's cancel scopes)
  goes through it, so a wait of 30 s takes no real time and ends at exactly 30.
- The loop jumps only when it would block: nothing is ready to run, no real file descriptor is
  ready (they are always polled, with a zero timeout, so sockets, pipes and the self-pipe that
  `call_soon_threadsafe` writes to keep working), and a timer is scheduled. It then moves the
  clock to that timer instead of sleeping, as trio's autojump does.
- With no timer scheduled at all (`timeout=None`) it waits for real I/O as asyncio would: a
  thread or a socket is the only thing that can wake it, and jumping would have nowhere to go.
- As with trio's autojump, a thread that is still working does not hold the clock back: waits
  racing a thread end at their virtual deadline.

Use it as ``asyncio.Runner(loop_factory=VirtualTimeEventLoop)``, or with anyio's pytest plugin
as the backend ``("asyncio", {"loop_factory": VirtualTimeEventLoop})``.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable


class _AutojumpSelector(selectors.DefaultSelector):
    """The platform's selector, which reports a wait it would block in to `jump` instead."""

    def __init__(self, jump: Callable[[float], None]) -> None:
        super().__init__()
        self._jump = jump

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            # Nothing scheduled: only real I/O (a socket, a thread's wake-up) can come next.
            return super().select(None)
        self._jump(timeout)
        return []


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock is virtual and jumps to the next timer when idle."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        self.autojumps = 0
        super().__init__(_AutojumpSelector(self._autojump))

    def time(self) -> float:
        return self._virtual_now

    def _autojump(self, seconds: float) -> None:
        # `_run_once` asks for the wait until the earliest timer, so this lands on it (within a
        # rounding error, which the loop's clock resolution absorbs when it picks due timers).
        self._virtual_now += seconds
        self.autojumps += 1

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        # From Python 3.12 `asyncio.Runner` bounds this join by 300 s, which would end at once in
        # virtual time (with a warning) while the executor's threads still run: join unbounded.
        await super().shutdown_default_executor()


__all__ = ["VirtualTimeEventLoop"]
