"""Pause and resume through the agent on `FakeRuntime`: the requests, the `pause_after`
policy, and the resume on use by every kind of request that names a sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from rock_agent import open_agent
from rock_agent._pause import QUIET
from rock_agent._routes import HANDLERS
from rock_agent.testing import open_fake_connection
from rock_core._errors import BadRequest, SandboxNotFound
from rock_core._protocol import (
    ClaimConnection,
    CloseSession,
    CommitSandbox,
    CreateSandbox,
    CreateSession,
    Done,
    Download,
    Execute,
    Expect,
    ForwardPort,
    InspectSandbox,
    Interrupt,
    ListenPort,
    PauseSandbox,
    ReadFile,
    RemoveSandbox,
    Request,
    ResumeSandbox,
    RunCommand,
    SandboxReply,
    SendInput,
    StartSandbox,
    StopSandbox,
    Upload,
    WaitCommand,
    WriteFile,
)
from rock_core.protocol import (
    CheckpointSandbox,
    CommandReply,
    ExecReply,
    ExecuteStreamed,
    OpenTerminal,
    ResizeTerminal,
)

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "box"
STEP = 30.0  # seconds any one wait may take before the test fails (never a timing assertion)


async def make_box(fake: Fake, **changes: object) -> None:
    conn = fake.conn
    create = CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec(**changes))
    await conn.call(create, SandboxReply)


async def state(fake: Fake) -> str:
    try:
        return (await fake.runtime.inspect(BOX)).state
    except SandboxNotFound:  # a `RemoveSandbox` may be done before it is looked at
        return "removed"


async def until(fake: Fake, paused: bool) -> str:
    """Wait (bounded) until the sandbox is paused, or is no longer; its state then."""
    with anyio.fail_after(STEP):
        while True:
            now = await state(fake)
            if (now == "paused") == paused:
                return now
            await anyio.sleep(0.01)


async def set_paused(fake: Fake, paused: bool) -> str:
    request = PauseSandbox(sandbox_id=BOX) if paused else ResumeSandbox(sandbox_id=BOX)
    return (await fake.conn.call(request, SandboxReply)).sandbox.state


@covers(CreateSandbox, PauseSandbox, ResumeSandbox, InspectSandbox, StopSandbox)
async def test_pause_and_resume_are_idempotent_and_refused_when_not_running() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        assert await set_paused(fake, True) == "paused"
        assert await set_paused(fake, True) == "paused"  # paused stays paused
        seen = await fake.conn.call(InspectSandbox(sandbox_id=BOX), SandboxReply)
        assert seen.sandbox.state == "paused"  # a look does not resume it
        assert await set_paused(fake, False) == "running"
        assert await set_paused(fake, False) == "running"
        await fake.conn.call(StopSandbox(sandbox_id=BOX, timeout=1), SandboxReply)
        with pytest.raises(BadRequest, match=r"sandbox box is not running \(exited\); start it"):
            await set_paused(fake, True)
        with pytest.raises(BadRequest, match=r"not running \(exited\); nothing to resume"):
            await set_paused(fake, False)
        with pytest.raises(SandboxNotFound, match="no sandbox 'nope' on host fake-host"):
            await fake.conn.call(PauseSandbox(sandbox_id="nope"), SandboxReply)


@covers(CreateSandbox, CreateSession, RunCommand, PauseSandbox)
async def test_a_session_goes_on_after_an_automatic_resume() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        conn = fake.conn
        await conn.call(CreateSession(sandbox_id=BOX, session="main"), Done)
        await conn.call(RunCommand(sandbox_id=BOX, session="main", command="X=kept"), CommandReply)
        await set_paused(fake, True)
        ran = await conn.call(
            RunCommand(sandbox_id=BOX, session="main", command="echo $X", stream=False),
            CommandReply,
        )
        assert (ran.result.output, ran.result.exit_code) == (b"kept\n", 0)
        assert await state(fake) == "running"


# One request of every kind that uses a sandbox (on session "main", which exists).
USES: dict[type[Request], Callable[[], Request]] = {
    CreateSandbox: lambda: CreateSandbox(sandbox_id=BOX, spec=spec()),
    StopSandbox: lambda: StopSandbox(sandbox_id=BOX, timeout=1),
    StartSandbox: lambda: StartSandbox(sandbox_id=BOX),
    RemoveSandbox: lambda: RemoveSandbox(sandbox_id=BOX),
    CreateSession: lambda: CreateSession(sandbox_id=BOX, session="other"),
    CloseSession: lambda: CloseSession(sandbox_id=BOX, session="main"),
    RunCommand: lambda: RunCommand(sandbox_id=BOX, session="main", command="true"),
    SendInput: lambda: SendInput(sandbox_id=BOX, session="main", data=b"\n"),
    Expect: lambda: Expect(sandbox_id=BOX, session="main", patterns=["x"], timeout=0.5),
    WaitCommand: lambda: WaitCommand(sandbox_id=BOX, session="main", timeout=0.5),
    Interrupt: lambda: Interrupt(sandbox_id=BOX, session="main"),
    Execute: lambda: Execute(sandbox_id=BOX, argv=["true"]),
    ExecuteStreamed: lambda: ExecuteStreamed(sandbox_id=BOX, argv=["true"]),
    OpenTerminal: lambda: OpenTerminal(sandbox_id=BOX, argv=["sh"]),
    ResizeTerminal: lambda: ResizeTerminal(sandbox_id=BOX, terminal=1, rows=30, cols=100),
    ReadFile: lambda: ReadFile(sandbox_id=BOX, path="/etc/hostname"),
    WriteFile: lambda: WriteFile(sandbox_id=BOX, path="/tmp/f", data=b"x"),
    Upload: lambda: Upload(sandbox_id=BOX, path="/tmp"),
    Download: lambda: Download(sandbox_id=BOX, path="/tmp"),
    CommitSandbox: lambda: CommitSandbox(sandbox_id=BOX, image="rock-test/paused:1"),
    ForwardPort: lambda: ForwardPort(sandbox_id=BOX, port=9),
    ListenPort: lambda: ListenPort(sandbox_id=BOX),
    ClaimConnection: lambda: ClaimConnection(sandbox_id=BOX, listen=1, connection=1),
    CheckpointSandbox: lambda: CheckpointSandbox(sandbox_id=BOX, checkpoint_id="paused"),
}


def test_every_request_that_names_a_sandbox_is_a_use_or_quiet() -> None:
    naming = {kind for kind in HANDLERS if "sandbox_id" in kind.__struct_fields__}
    assert naming == set(USES) | set(QUIET)


@pytest.mark.parametrize("kind", list(USES), ids=lambda kind: kind.__name__)
async def test_every_kind_of_use_resumes_a_paused_sandbox(kind: type[Request]) -> None:
    async with open_fake() as fake:
        await make_box(fake)
        await fake.conn.call(CreateSession(sandbox_id=BOX, session="main"), Done)
        await set_paused(fake, True)
        # Streams (uploads, downloads) wait for the caller: the resume comes before the
        # handler, so it is seen while the request is open; the request is then dropped.
        async with fake.conn.open_request(USES[kind]()):
            # A stop or a removal may follow the resume.
            assert await until(fake, False) in ("running", "exited", "removed")


@covers(CreateSandbox, Execute)
async def test_pause_after_pauses_an_idle_sandbox_and_a_use_resumes_it() -> None:
    async with open_fake() as fake:
        await make_box(fake, pause_after=0.2)
        await until(fake, True)
        done = await fake.conn.call(Execute(sandbox_id=BOX, argv=["echo", "back"]), ExecReply)
        assert (done.result.stdout, done.result.exit_code) == (b"back\n", 0)
        assert await state(fake) == "running"
        # Paused again once idle for as long again.
        await until(fake, True)


@pytest.mark.parametrize("value", [float("nan"), -1.0, 0.0, 1e12])
async def test_a_bad_pause_after_is_refused(value: float) -> None:
    async with open_fake() as fake:
        with pytest.raises(BadRequest, match="pause_after"):
            await make_box(fake, pause_after=value)


async def test_an_agent_just_started_resumes_a_sandbox_paused_before_it_started() -> None:
    # `rock exec` starts an agent of its own on the engine; its first request may come before
    # that agent's start-up listing (which tells it what is paused) has come back.
    async with open_fake() as fake:
        await make_box(fake)
        await set_paused(fake, True)
        listed = anyio.Event()
        listing = fake.runtime.list_sandboxes

        async def slow_listing(*args: Any, **kwargs: Any) -> Any:
            await listed.wait()
            return await listing(*args, **kwargs)

        fake.runtime.list_sandboxes = slow_listing  # type: ignore[method-assign]
        async with open_agent(fake.runtime) as other:
            try:
                async with open_fake_connection(other, owner="cli", admin=True) as conn:
                    request = Execute(sandbox_id=BOX, argv=["echo", "thawed"])
                    with anyio.fail_after(STEP):
                        done = await conn.call(request, ExecReply)
            finally:
                listed.set()
        assert (done.result.stdout, done.result.exit_code) == (b"thawed\n", 0)
        assert await state(fake) == "running"
