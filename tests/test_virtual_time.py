"""Virtual time itself, on both backends: long waits take no real time and end exactly at their
deadline, cancel scopes fire at the virtual deadline, and threads still report back."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import anyio
import pytest

from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)
from tests.virtual_loop import VirtualTimeEventLoop

pytestmark = pytest.mark.anyio


async def test_a_long_sleep_moves_the_clock_exactly_and_takes_no_real_time() -> None:
    start = anyio.current_time()
    real_start = time.monotonic()
    await anyio.sleep(30)
    assert anyio.current_time() - start == 30
    # Not a timing assertion: a real 30 s wait can never pass it, a virtual one always does.
    assert time.monotonic() - real_start < 29


async def test_move_on_after_fires_at_the_virtual_deadline() -> None:
    start = anyio.current_time()
    with anyio.move_on_after(5) as scope:
        await anyio.sleep(3600)
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 5


async def test_the_earliest_of_several_timers_wakes_first() -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await anyio.sleep(seconds)
        woke.append((name, anyio.current_time()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 20)
        tg.start_soon(sleeper, "early", 7)
    assert woke == [("early", 7), ("late", 20)]


async def test_a_thread_still_reports_back() -> None:
    # Nothing else is scheduled, so the loop waits for the thread in real time.
    assert await anyio.to_thread.run_sync(lambda: threading.get_ident()) != threading.get_ident()


async def test_a_thread_blocked_on_an_event_is_woken_from_the_loop() -> None:
    release = threading.Event()

    def worker() -> str:
        if not release.wait(timeout=60):
            raise AssertionError("the loop never released the worker")
        return "done"

    async with anyio.create_task_group() as tg:

        async def run_worker() -> None:
            assert await anyio.to_thread.run_sync(worker) == "done"

        tg.start_soon(run_worker)
        await anyio.sleep(1)  # a timer while the thread waits: the clock jumps over it
        release.set()


async def test_a_ready_socket_is_read_before_the_clock_jumps() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"ping")
        start = anyio.current_time()
        with anyio.fail_after(10):
            await anyio.wait_readable(left)
        assert left.recv(4) == b"ping"
        assert anyio.current_time() == start


def test_the_asyncio_loop_jumps_once_per_idle_wait() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        await asyncio.sleep(2.5)
        await asyncio.sleep(0)  # ready at once: no jump
        return loop.time(), loop.autojumps

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        assert runner.run(main()) == (2.5, 1)


def test_the_asyncio_loop_waits_for_real_io_when_nothing_is_scheduled() -> None:
    async def main() -> tuple[str, float, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        future: asyncio.Future[str] = loop.create_future()
        thread = threading.Thread(
            target=lambda: loop.call_soon_threadsafe(future.set_result, "from the thread")
        )
        thread.start()
        try:
            return await future, loop.time(), loop.autojumps
        finally:
            thread.join()

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        assert runner.run(main()) == ("from the thread", 0.0, 0)
