"""Calling asyncio-only libraries (asyncssh) from any anyio backend.

Under asyncio a call is a plain ``await``. Under trio, asyncio work runs on one shared event
loop in a daemon thread; `run_asyncio` submits the coroutine there and sleeps in trio until it
finishes, woken through the trio token (never by blocking a thread). Cancelling the trio side
cancels the asyncio task. Objects made on the asyncio side (an SSH connection, its channels)
must only be touched through `run_asyncio`, so they stay on their own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def on_asyncio() -> bool:
    """True when the caller runs on an asyncio loop (under trio no asyncio loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def bridge_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop of the bridge thread, started on first use."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="rock-asyncio-bridge", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


async def run_asyncio(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` on an asyncio loop, whatever backend runs the caller."""
    if on_asyncio():
        return await fn(*args, **kwargs)
    return await _in_bridge(fn, *args, **kwargs)


async def _in_bridge(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    import trio

    async def call() -> T:
        return await fn(*args, **kwargs)

    future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(call(), bridge_loop())
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # the trio run ended; nobody waits any more

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        if not future.cancel():
            _close_orphan(future)
        raise
    return future.result()


def _close_orphan(future: concurrent.futures.Future[Any]) -> None:
    """The call finished just as its caller was cancelled: close what it made (an SSH
    connection, say), since nobody will."""
    with contextlib.suppress(BaseException):
        result = future.result(timeout=0)
        close = getattr(result, "close", None)
        if callable(close):
            bridge_loop().call_soon_threadsafe(close)


__all__ = ["bridge_loop", "on_asyncio", "run_asyncio"]
