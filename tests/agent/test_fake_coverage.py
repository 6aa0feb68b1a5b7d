"""The agent on `FakeRuntime`: the kit the `test_fake_*` modules share, and the check that
they cover every request kind of the protocol.

Each test that drives the agent declares the kinds it covers with `@covers(...)`; the
declaration is checked: the test fails unless the agent heard every kind it names. A new
request kind that no test covers fails `test_every_request_kind_is_covered`.

No Docker, no sleeps: the real `AgentServer` (through `open_agent`) over a `FakeRuntime`,
reached with rock_core's `open_agent_connection` over an in-memory stream. Asyncio only, as
the agent side is.
"""

from __future__ import annotations

import functools
import importlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec

import anyio
import pytest

from rock_agent import AgentServer, open_agent
from rock_agent._image_usage import STATE_DIR_ENV
from rock_agent.testing import FakeRuntime, open_fake_connection
from rock_core import AgentConnection
from rock_core._connection import unwrap_single_errors
from rock_core._endpoint import Connection
from rock_core._protocol import ClientMessage, Ping, Pong, Request, SandboxChanged, SandboxSpec

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

P = ParamSpec("P")

KINDS: frozenset[type[Request]] = frozenset(
    kind for kind in ClientMessage.__args__ if issubclass(kind, Request)
)
MODULES = [
    "test_fake_sandboxes",
    "test_fake_commands",
    "test_fake_files",
    "test_fake_images",
    "test_fake_build",
    "test_fake_crash",
    "test_fake_host_port",
    "test_fake_logs",
    "test_fake_metrics",
    "test_fake_top",
    "test_exec_streamed",
    "test_fake_pause",
    "test_fake_terminal",
    "test_fake_checkpoints",
]
COVERED: dict[type[Request], list[str]] = {}  # kind: the tests that cover it
HEARD: set[type[Any]] = set()  # kinds the agent heard during the running test
OWNER = "tester"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def covers(
    *kinds: type[Request],
) -> Callable[[Callable[P, Awaitable[None]]], Callable[P, Awaitable[None]]]:
    """Declare (and check) the request kinds a test makes the agent handle."""

    def wrap(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
        for kind in kinds:
            COVERED.setdefault(kind, []).append(f"{test.__module__}.{test.__name__}")

        @functools.wraps(test)
        async def run(*args: P.args, **kwargs: P.kwargs) -> None:
            HEARD.clear()
            await test(*args, **kwargs)
            missing = sorted(k.__name__ for k in set(kinds) - HEARD)
            assert not missing, f"{test.__name__} covers {missing} but never sent them"

        return run

    return wrap


def spec(**changes: Any) -> SandboxSpec:
    """A small sandbox spec on an image the fake has."""
    return SandboxSpec(**{"image": SH_IMAGE, "memory": 256 << 20, **changes})


@dataclass
class Fake:
    """One agent on a fake runtime, and one owner's connection to it."""

    runtime: FakeRuntime
    server: AgentServer
    conn: AgentConnection

    def connect(
        self, owner: str = OWNER, admin: bool = False
    ) -> AbstractAsyncContextManager[AgentConnection]:
        """Another connection to the same agent."""
        return open_fake_connection(self.server, owner=owner, admin=admin)

    def watch(self) -> tuple[list[SandboxChanged], anyio.Event]:
        """The owner's pushed changes, and an event set at the first "stopped" one."""
        changes: list[SandboxChanged] = []
        stopped = anyio.Event()

        def on_event(change: SandboxChanged) -> None:
            changes.append(change)
            if change.state == "stopped":
                stopped.set()

        self.conn.on_event = on_event
        return changes, stopped


@asynccontextmanager
async def open_fake(
    *, owner: str = OWNER, lease: float = 60.0, runtime: FakeRuntime | None = None
) -> AsyncIterator[Fake]:
    """An agent (`open_agent`) on a `FakeRuntime`, with `owner` connected over memory."""
    saved = os.environ.get(STATE_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="rock-fake-state-") as state:
        os.environ[STATE_DIR_ENV] = state  # the agent's records (image use, deadlines)
        try:
            with unwrap_single_errors():  # errors come out as themselves, not in a group
                async with (
                    runtime or FakeRuntime(images=[SH_IMAGE]) as fake_runtime,
                    open_agent(fake_runtime, lease=lease) as server,
                ):
                    heard = server.heard

                    def record(conn: Connection, message: ClientMessage) -> None:
                        HEARD.add(type(message))
                        heard(conn, message)

                    server.heard = record  # type: ignore[method-assign]
                    fake = Fake(fake_runtime, server, conn=None)  # type: ignore[arg-type]
                    async with fake.connect(owner) as conn:
                        fake.conn = conn
                        yield fake
        finally:
            if saved is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = saved


# ---------------------------------------------------------------------------- the checks


def test_every_request_kind_is_covered() -> None:
    for name in MODULES:
        importlib.import_module(f"{__package__}.{name}")
    missing = sorted(kind.__name__ for kind in KINDS - COVERED.keys())
    assert not missing, f"no test_fake_* test covers {missing}"
    assert len(KINDS) >= 28  # Ping ... Keepalive and Cancel, as the protocol has them today


@covers(Ping)
async def test_ping_is_heard_and_answered() -> None:
    async with open_fake() as fake:
        pong = await fake.conn.call(Ping(id=fake.conn.next_id()), Pong)
        assert pong.time > 0


async def test_a_declared_kind_the_test_never_sends_fails_it() -> None:
    @covers(Ping)
    async def silent() -> None:
        async with open_fake():
            pass

    with pytest.raises(AssertionError, match=r"silent covers \['Ping'\] but never sent them"):
        await silent()
    COVERED[Ping].remove(f"{__name__}.silent")
