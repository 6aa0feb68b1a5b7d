"""Helpers for the warm-pool tests: a spec, fake-cluster checks, gates and hung removes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest

import rock_core
import rock_core._cleanup
from rock_core import (
    Cluster,
    SandboxSpec,
    SandboxState,
)
from rock_core._endpoint import Connection
from rock_core._protocol import RemoveSandbox, Reply, Request
from rock_core.testing import FakeAgent, FakeCluster

GiB = 1 << 30


SPEC = SandboxSpec(image="img:1", cpus=0.5, memory=GiB)


RUNNING = SandboxState.RUNNING


DELETED = SandboxState.DELETED


def assert_no_resources_in_use(cluster: Cluster) -> None:
    stats = cluster.statistics()
    assert (stats.placed, stats.starting, stats.queue_depth) == (0, 0, 0)


def live_on_agents(cluster: FakeCluster) -> set[str]:
    return {sid for agent in cluster.agents.values() for sid in agent.sandboxes}


async def until(condition: object, what: str, timeout: float = 5.0) -> None:
    """Wait until `condition()` is true (in virtual time: each look costs no real time)."""
    assert callable(condition)
    with anyio.fail_after(timeout):
        while True:
            if condition():
                return
            await anyio.sleep(0.005)


class Gate:
    """A fake start latency that holds every create until it is opened."""

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.waiting: list[str] = []

    async def __call__(self, sandbox_id: str) -> None:
        self.waiting.append(sandbox_id)
        await self.opened.wait()


def before_removes(
    monkeypatch: pytest.MonkeyPatch, agent: FakeAgent, hook: Callable[[str], Awaitable[None]]
) -> None:
    """Await `hook(sandbox_id)` before the fake agent serves each remove: a hung or failing
    `docker rm` (a hook that raises a `RockError` makes the remove fail with it)."""
    handle = agent.handle

    async def hooked(conn: Connection, request: Request) -> Reply:
        if isinstance(request, RemoveSandbox):
            await hook(request.sandbox_id)
        return await handle(conn, request)

    monkeypatch.setattr(agent, "handle", hooked)


HANG = 5.0  # seconds a "hung" engine or prepare takes: far beyond any bound under test


class HungRemoves:
    """A remove hook that hangs, like a `docker rm` that does not return: until `let_go` is
    set, or for `HANG` seconds (then the engine recovers, so a test that waited for it fails
    on its timing instead of hanging for good inside a shielded scope).

    It holds the removes of `only` (default: every sandbox), `times` times per sandbox at most
    (default: always); `held` lists each remove it held, in order.
    """

    def __init__(self, *, only: set[str] | None = None, times: int | None = None) -> None:
        self.only = only
        self.times = times
        self.held: list[str] = []
        self.let_go = anyio.Event()

    async def __call__(self, sandbox_id: str) -> None:
        if self.only is not None and sandbox_id not in self.only:
            return
        if self.times is not None and self.held.count(sandbox_id) >= self.times:
            return
        self.held.append(sandbox_id)
        with anyio.move_on_after(HANG):
            await self.let_go.wait()


def short_cleanups(monkeypatch: pytest.MonkeyPatch) -> float:
    """Shielded cleanups give up after 0.2 s instead of a minute."""
    monkeypatch.setattr(rock_core._cleanup, "CLEANUP_TIMEOUT", 0.2)
    return 0.2


__all__ = [
    "DELETED",
    "HANG",
    "RUNNING",
    "SPEC",
    "Gate",
    "GiB",
    "HungRemoves",
    "assert_no_resources_in_use",
    "before_removes",
    "live_on_agents",
    "short_cleanups",
    "until",
]
