"""An event loop of its own in a daemon thread, for synchronous APIs built on the async kit.

Sandboxes, sessions and clusters belong to the event loop that opened them. Synchronous code
(a sandbox env's `reset`/`step`, a mini-swe-agent environment) has no loop, so it starts this
one (asyncio, in a daemon thread) and runs every coroutine there through an anyio
`BlockingPortal`. Async code that passes its own cluster never needs one.

The thread is a daemon so that a program that forgets `close()` still exits; its sandboxes
are then removed by the local agent, which sees the program's pipe close.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from rock_core import BadRequest

__all__ = ["LoopThread"]

T = TypeVar("T")

_JOIN_TIMEOUT = 30.0


class LoopThread:
    """A running asyncio loop in a daemon thread; `call` runs a coroutine function there."""

    def __init__(
        self,
        name: str = "rock-loop",
        *,
        closed: str = "this environment is closed",
        on_own_loop: str = "a blocking method cannot run on its own event loop",
    ) -> None:
        """Start the thread; `closed` and `on_own_loop` are the `BadRequest` messages of a call
        after `stop` and of a blocking call from inside the loop (which would deadlock)."""
        self._closed = closed
        self._on_own_loop = on_own_loop
        self._ready = threading.Event()
        self._portal: BlockingPortal | None = None
        self._failure: BaseException | None = None
        self._contexts: list[contextlib.AbstractContextManager[Any]] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as exc:  # reported to the constructor, which waits for it
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with BlockingPortal() as portal:
            self._portal = portal
            self._ready.set()
            await portal.sleep_until_stopped()

    @property
    def running(self) -> bool:
        """True until `stop`."""
        return self._portal is not None and self._thread.is_alive()

    def _checked_portal(self) -> BlockingPortal:
        if self._portal is None or not self._thread.is_alive():
            raise BadRequest(self._closed)
        if threading.current_thread() is self._thread:
            raise BadRequest(self._on_own_loop)
        return self._portal

    def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await func(*args)`` in the loop and return its result (or raise its error)."""
        return self._checked_portal().call(func, *args)

    def enter(self, cm: AbstractAsyncContextManager[T]) -> T:
        """Enter an async context manager in a task of its own; `stop` exits it."""
        wrapped = self._checked_portal().wrap_async_context_manager(cm)
        value = wrapped.__enter__()
        self._contexts.append(wrapped)
        return value

    def stop(self) -> None:
        """Exit the entered contexts (last first), stop the loop and join the thread."""
        if self._portal is None or threading.current_thread() is self._thread:
            return  # never block the loop on itself; the daemon thread ends with the process
        portal, self._portal = self._portal, None
        try:
            while self._contexts:
                self._contexts.pop().__exit__(None, None, None)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                portal.call(portal.stop, True)
            self._thread.join(_JOIN_TIMEOUT)
