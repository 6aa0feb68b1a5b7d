"""Sandboxes that stop on their own, on `FakeRuntime`: a main process that ends, and
`FakeRuntime.crash` (an OOM kill too), as the runtime reports them and as the agent pushes
them to their owner (`SandboxChanged`, cause "engine")."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from rock_agent.testing import FakeRuntime
from rock_core._errors import BadRequest, SandboxFailed, SandboxNotFound
from rock_core._protocol import (
    CreateSandbox,
    InspectSandbox,
    SandboxReply,
    StartSandbox,
)
from rock_core.protocol import SandboxSpec

from ..conftest import SH_IMAGE
from .test_fake_coverage import anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

STOPPED = "the container stopped (exit code {}), not at its owner's request"


async def make(runtime: FakeRuntime, sandbox_id: str) -> None:
    await runtime.create(sandbox_id, SandboxSpec(image=SH_IMAGE), "tester", runtime.uid)


async def test_a_main_process_that_ends_stops_the_sandbox_with_its_code_and_a_die() -> None:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await make(runtime, "box")
        straggler = await runtime.exec("box", ["sleep", "600"], stdin=False)
        os.kill((await runtime.container("box")).pid, signal.SIGTERM)
        with anyio.fail_after(30):
            async for event in runtime.events(0):
                if event.action == "die":
                    break
        assert (event.sandbox_id, event.exit_code) == ("box", 128 + signal.SIGTERM)
        info = await runtime.inspect("box")
        assert (info.state, info.exit_code) == ("exited", 143)
        detail = await runtime.container("box")
        assert (detail.running, detail.pid, detail.exit_code) == (False, 0, 143)
        assert not detail.oom_killed
        assert not (await straggler.state()).running  # the sandbox's other processes went too
        await straggler.aclose()


async def test_an_ended_main_process_is_noticed_by_any_call_and_told_once() -> None:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await make(runtime, "box")
        main = (await runtime.container("box")).pid
        os.kill(main, signal.SIGKILL)
        with anyio.fail_after(30):
            while (await runtime.inspect("box")).state == "running":
                await anyio.wait_all_tasks_blocked()  # until the process's end is seen
        await runtime.start("box")
        await runtime.remove("box")
        actions = []
        async for event in runtime.events(0):
            actions.append((event.action, event.exit_code))
            if event.action == "destroy":
                break
        assert actions == [
            ("start", None),
            ("die", 137),
            ("start", None),
            ("die", 143),
            ("destroy", None),
        ]


async def test_crash_ends_every_process_with_the_code_given() -> None:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await make(runtime, "box")
        process = await runtime.exec("box", ["sleep", "600"], stdin=False)
        await runtime.crash("box", exit_code=3)
        info = await runtime.inspect("box")
        assert (info.state, info.exit_code) == ("exited", 3)
        assert not (await process.state()).running
        await process.aclose()
        with pytest.raises(SandboxFailed, match="sandbox box: the sandbox is not running"):
            await runtime.exec("box", ["true"])


async def test_an_oom_crash_is_reported_as_the_engine_reports_it() -> None:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await make(runtime, "box")
        await runtime.crash("box", oom=True)
        detail = await runtime.container("box")
        assert (detail.status, detail.exit_code, detail.oom_killed) == ("exited", 137, True)
        await runtime.start("box")  # a new start clears it, as the engine's OOMKilled
        detail = await runtime.container("box")
        assert (detail.running, detail.exit_code, detail.oom_killed) == (True, None, False)


async def test_crash_refuses_a_stopped_or_unknown_sandbox() -> None:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await make(runtime, "box")
        await runtime.stop("box", 1)
        with pytest.raises(BadRequest, match=r"sandbox box is not running \(exited\); start it"):
            await runtime.crash("box")
        with pytest.raises(SandboxNotFound, match="no sandbox 'gone' on host fake-host"):
            await runtime.crash("gone")


@covers(CreateSandbox, InspectSandbox, StartSandbox)
async def test_a_crashed_sandbox_is_pushed_to_its_owner_with_the_engine_as_cause() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        changes, stopped = fake.watch()
        await conn.call(
            CreateSandbox(id=conn.next_id(), sandbox_id="box", spec=spec()), SandboxReply
        )
        await fake.runtime.crash("box", exit_code=2)
        with anyio.fail_after(30):
            await stopped.wait()
        change = changes[-1]
        assert (change.sandbox_id, change.state, change.cause) == ("box", "stopped", "engine")
        assert change.reason == STOPPED.format(2)
        seen = await conn.call(InspectSandbox(id=conn.next_id(), sandbox_id="box"), SandboxReply)
        assert (seen.sandbox.state, seen.sandbox.exit_code) == ("exited", 2)
        started = await conn.call(StartSandbox(id=conn.next_id(), sandbox_id="box"), SandboxReply)
        assert started.sandbox.state == "running"


@covers(CreateSandbox)
async def test_an_oom_crash_is_pushed_as_the_real_agent_says_it() -> None:
    # Docker's "die" carries only the exit code (its OOM flag is in the container's detail,
    # and its "oom" event is not one the agent follows): the owner hears exit code 137.
    async with open_fake() as fake:
        conn = fake.conn
        changes, stopped = fake.watch()
        await conn.call(
            CreateSandbox(id=conn.next_id(), sandbox_id="box", spec=spec()), SandboxReply
        )
        await fake.runtime.crash("box", oom=True)
        with anyio.fail_after(30):
            await stopped.wait()
        assert (changes[-1].cause, changes[-1].reason) == ("engine", STOPPED.format(137))
        assert (await fake.runtime.container("box")).oom_killed
