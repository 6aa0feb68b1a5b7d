"""Timing of engine calls for the agent's metrics, without the engine module knowing who
measures.

Rules:
- `_engine.engine_call`, the one choke point of bounded engine calls, times each call with
  `timed`; the agent says where the times go with `observing_engine` (a context variable, so
  many agents in one process, each in its own tasks, never mix their numbers).
- With no observer (a program that embeds the runtime without an agent), `timed` reads no
  clock.
- An observer is handed the call's description (`what`, which names ids) and its seconds,
  whether the call succeeded or failed; it must not raise.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar

Observer = Callable[[str, float], None]

_observer: ContextVar[Observer | None] = ContextVar("rock_engine_observer", default=None)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Hand the time the block took to the current observer, if there is one."""
    observe = _observer.get()
    if observe is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        observe(what, time.perf_counter() - started)


@contextlib.asynccontextmanager
async def observing_engine(observe: Observer) -> AsyncIterator[None]:
    """Within the block (and in tasks started from it), engine calls report to `observe`.

    Async only to sit beside a task group in one ``async with`` (the variable is set in the
    caller's context, as a generator's body runs in it)."""
    token = _observer.set(observe)
    try:
        yield
    finally:
        _observer.reset(token)


__all__ = ["Observer", "observing_engine", "timed"]
