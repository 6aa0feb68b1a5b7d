"""Stand-alone sandboxes (no cluster given) on asyncio and trio, against the real engine.

They share one embedded local cluster per event loop, owned by a task of its own: any task
may start, use or delete any of them; a delete in one task while another waits on `arun`
gives that `arun` a typed error and cancels nobody; they all use one agent process; and
nothing is left behind, whether the program deletes them or just returns.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import anyio
import pytest
import trio

from rock_sdk import (
    RockError,
    Sandbox,
    SandboxConfig,
    SandboxNotFound,
    SandboxState,
    TransportError,
)

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

SMALL = SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test of this module runs under asyncio and under trio."""
    backend: str = request.param
    return backend


def agent_processes() -> set[int]:
    """Local agents (``rock_agent serve --stdio``) that this process started."""
    found = set()
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"rock_agent" in cmdline and b"--stdio" in cmdline:
            found.add(int(entry.name))
    return found


def container_exists(container_id: str) -> bool:
    result = subprocess.run(["docker", "inspect", container_id], capture_output=True)
    return result.returncode == 0


def container_of(sandbox: Sandbox) -> str:
    record = sandbox._record
    assert record is not None and record.info is not None
    return record.info.container_id


async def test_start_in_one_task_use_and_delete_in_another(docker_engine: None) -> None:
    sandbox = Sandbox(SMALL)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sandbox.start)
    assert sandbox.state is SandboxState.RUNNING
    container = container_of(sandbox)
    result = {}

    async def use_and_delete() -> None:
        result["output"] = (await sandbox.arun("echo from another task")).output
        await sandbox.delete()

    async with anyio.create_task_group() as tg:
        tg.start_soon(use_and_delete)
    assert result == {"output": "from another task\n"}
    assert sandbox.state is SandboxState.DELETED
    assert not container_exists(container)
    assert not agent_processes()  # the last stand-alone sandbox closed the shared core


async def test_a_delete_while_a_sibling_waits_on_arun_gives_it_a_typed_error(
    docker_engine: None,
) -> None:
    sandbox = Sandbox(SMALL)
    await sandbox.start()
    running = anyio.Event()
    errors: list[RockError] = []

    def seen(chunk: bytes) -> None:
        if b"started" in chunk:
            running.set()

    async def waits_on_arun() -> None:
        try:
            await sandbox.arun("echo started; sleep 60", on_output=seen)
        except RockError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waits_on_arun)
        await running.wait()
        await sandbox.delete()
    (error,) = errors
    assert type(error) is SandboxNotFound
    assert str(error) == (
        f"sandbox {sandbox.sandbox_id} was deleted while command 'echo started; sleep 60' ran"
    )
    # Nobody was cancelled: this task goes on, and a new stand-alone sandbox works.
    async with Sandbox(SMALL) as again:
        assert (await again.arun("echo still here")).output == "still here\n"


async def test_many_stand_alone_sandboxes_share_one_agent_process(docker_engine: None) -> None:
    sandboxes = [Sandbox(SMALL) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for sandbox in sandboxes:
            tg.start_soon(sandbox.start)
    clusters = {id(sandbox.cluster) for sandbox in sandboxes}
    assert len(clusters) == 1
    assert len(agent_processes()) == 1
    containers = [container_of(sandbox) for sandbox in sandboxes]
    async with anyio.create_task_group() as tg:
        for sandbox in sandboxes[:2]:
            tg.start_soon(sandbox.delete)
    assert len(agent_processes()) == 1  # one sandbox still uses it
    assert (await sandboxes[2].arun("echo last")).output == "last\n"
    await sandboxes[2].delete()
    assert not agent_processes()
    assert not any(container_exists(c) for c in containers)


async def test_a_failed_start_is_a_typed_error_and_the_next_start_tries_again(
    docker_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCK_AGENT_COMMAND", "/nonexistent/rock-agent")
    for _ in range(2):
        with pytest.raises(TransportError) as info:
            await Sandbox(SMALL).start()
        assert str(info.value) == (
            "cannot start the local agent (/nonexistent/rock-agent): [Errno 2] No such file or"
            " directory: '/nonexistent/rock-agent'"
        )
    monkeypatch.delenv("ROCK_AGENT_COMMAND")
    async with Sandbox(SMALL) as sandbox:
        assert (await sandbox.arun("echo up")).output == "up\n"


# ------------------------------------------------------------------ whole programs


def test_asyncio_run_start_in_a_task_and_stop_delete_in_main(docker_engine: None) -> None:
    """ROCK's idiom: the sandbox is started in one task and ended at the end of main."""
    seen: dict[str, object] = {}

    async def main() -> None:
        sandbox = Sandbox(SMALL)
        await asyncio.get_running_loop().create_task(sandbox.start())
        seen["container"] = container_of(sandbox)
        await sandbox.stop()
        seen["state"] = sandbox.state
        await sandbox.delete()

    asyncio.run(main())
    assert seen["state"] is SandboxState.STOPPED
    assert not container_exists(str(seen["container"]))
    assert not agent_processes()


def test_trio_run_start_in_a_task_and_delete_in_main(docker_engine: None) -> None:
    seen: dict[str, object] = {}

    async def main() -> None:
        sandbox = Sandbox(SMALL)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sandbox.start)
        seen["container"] = container_of(sandbox)
        seen["output"] = (await sandbox.arun("echo trio")).output
        await sandbox.delete()

    trio.run(main)
    assert seen["output"] == "trio\n"
    assert not container_exists(str(seen["container"]))
    assert not agent_processes()


@pytest.mark.parametrize(
    "runner",
    [
        # asyncio cancels every task at the loop's end: a fresh link deletes the sandbox, and
        # the old agent lingers until `_open_local` gives up on it (30 s).
        pytest.param("asyncio", marks=pytest.mark.slow),
        "trio",
    ],
)
def test_a_program_that_returns_without_deleting_leaves_nothing(
    docker_engine: None, runner: str
) -> None:
    seen: dict[str, object] = {}

    async def main() -> None:
        sandbox = Sandbox(SMALL)
        await sandbox.start()
        seen["container"] = container_of(sandbox)
        # returns with the sandbox running: the event loop's end cleans up

    if runner == "asyncio":
        asyncio.run(main())
    else:
        trio.run(main)
    assert not container_exists(str(seen["container"]))
    assert not agent_processes()
