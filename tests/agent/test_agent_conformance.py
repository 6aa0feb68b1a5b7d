"""One protocol conformance suite (`agent_checks`) run on every agent a core may talk to.

- The real agent (`open_agent`) on `FakeRuntime`, reached over memory (`AgentConnector`):
  every check, on asyncio (the agent side is asyncio-only).
- `rock_core.testing.FakeAgent`: the checks whose request kinds it serves (`FAKE_KINDS`,
  asserted against its own handler table so the list cannot go stale), on asyncio and trio.
  Any other kind it answers with `BadRequest`, which is checked too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest

from rock_agent.testing import AgentConnector
from rock_core import BadRequest, unwrap_single_errors
from rock_core._fake_checkpoint import HANDLERS as CHECKPOINT_HANDLERS
from rock_core._protocol import (
    ClientMessage,
    CreateSandbox,
    Execute,
    InspectSandbox,
    ListSandboxes,
    PauseSandbox,
    Ping,
    Pong,
    ReadStats,
    RemoveSandbox,
    Request,
    ResumeSandbox,
    SandboxSpec,
    StartSandbox,
    StopSandbox,
)
from rock_core.testing import FakeAgent, FakeAgentConnector

from ..conftest import SH_IMAGE
from . import agent_checks_checkpoint  # noqa: F401  (registers its check)
from .agent_checks import CHECKS, ENDPOINT_KINDS, Check, Subject, whole
from .test_fake_coverage import open_fake

ALL_KINDS: frozenset[type[Request]] = frozenset(
    kind for kind in ClientMessage.__args__ if issubclass(kind, Request)
)
# The request kinds FakeAgent serves: the sandbox lifecycle, pause and resume, checkpoints.
FAKE_KINDS: frozenset[type[Request]] = frozenset(
    {Ping, CreateSandbox, StopSandbox, StartSandbox, RemoveSandbox, InspectSandbox, ListSandboxes}
    | {PauseSandbox, ResumeSandbox}
    | set(CHECKPOINT_HANDLERS)
)
HELD = "held"  # FakeAgent's creates of this id wait until they are cancelled


async def hold(sandbox_id: str) -> None:
    if sandbox_id == HELD:
        await anyio.sleep_forever()


@asynccontextmanager
async def fake_agent() -> AsyncIterator[Subject]:
    agent = FakeAgent(images=[SH_IMAGE], start_latency=hold)
    subject = Subject(
        host_id=agent.host_id,
        image=SH_IMAGE,
        kinds=FAKE_KINDS | ENDPOINT_KINDS,
        open_stream=FakeAgentConnector(agent).connect,
        held=lambda _: CreateSandbox(sandbox_id=HELD, spec=SandboxSpec(image=SH_IMAGE)),
    )
    yield subject


@asynccontextmanager
async def real_agent() -> AsyncIterator[Subject]:
    async with open_fake(owner="conformance-keeper") as fake:
        yield Subject(
            host_id=fake.server.host_id,
            image=SH_IMAGE,
            kinds=ALL_KINDS,
            open_stream=AgentConnector(fake.server).connect,
            held=lambda sandbox_id: Execute(sandbox_id=sandbox_id, argv=["sleep", "60"]),
        )


def run(
    open_subject: Callable[[], AbstractAsyncContextManager[Subject]], check: Check, backend: str
) -> None:
    async def main() -> None:
        with unwrap_single_errors(), anyio.fail_after(120):
            async with open_subject() as subject:
                assert check.kinds <= subject.kinds, f"{check.name} needs kinds it lacks"
                await check.run(subject)

    anyio.run(main, backend=backend)


def served_by_fake(check: Check) -> bool:
    return check.kinds <= FAKE_KINDS | ENDPOINT_KINDS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_the_real_agent_on_a_fake_runtime(check: Check) -> None:
    run(real_agent, check, "asyncio")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("check", [c for c in CHECKS if served_by_fake(c)], ids=lambda c: c.name)
def test_the_fake_agent(check: Check, backend: str) -> None:
    run(fake_agent, check, backend)


def test_the_fake_serves_the_kinds_this_suite_says() -> None:
    assert FakeAgent.request_kinds == FAKE_KINDS
    assert FAKE_KINDS < ALL_KINDS and ENDPOINT_KINDS < ALL_KINDS
    # The suite checks every kind the fake serves.
    checked = frozenset().union(*(c.kinds for c in CHECKS if served_by_fake(c)))
    assert checked == FAKE_KINDS | ENDPOINT_KINDS


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_fake_refuses_the_kinds_it_does_not_serve(backend: str) -> None:
    async def main() -> None:
        async with fake_agent() as subject, subject.connect("alice") as conn:
            for request in (
                Execute(sandbox_id="box", argv=["true"]),
                ReadStats(sandbox_id="box"),
            ):
                name = type(request).__name__
                message = f"this fake agent cannot handle {name}"
                with pytest.raises(BadRequest, match=whole(message)):
                    await conn.call(request, Pong)

    anyio.run(main, backend=backend)
