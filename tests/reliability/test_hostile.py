"""Hostile programs in a sandbox, seen from outside.

Each program runs in a sandbox of its own while a bystander sandbox of the same agent runs
echo commands in a loop: every one of them must answer, before, during and after. Afterwards
the hostile sandbox is usable (a new session works) or clearly failed (a typed error).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator

import anyio
import pytest

from rock_core import Cluster
from rock_sdk import RockError, Sandbox, SandboxConfig, SandboxFailed, SessionClosed

from .._host_pid import host_pid
from ..conftest import PY_IMAGE, SH_IMAGE
from ..integration.test_session_edges import wire_run

pytestmark = pytest.mark.anyio

_names = itertools.count()


@pytest.fixture(scope="module")
async def bystander(cluster: Cluster) -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


@pytest.fixture
async def victim(cluster: Cluster) -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, memory="128m", pids=128, cpus=0.5), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


@contextlib.asynccontextmanager
async def watched(bystander: Sandbox) -> AsyncIterator[None]:
    """Run echo commands on the bystander for as long as the block runs; all must answer."""
    answers: list[tuple[int, str]] = []
    stop = anyio.Event()
    session = await bystander.create_session(f"watch{next(_names)}")

    async def loop() -> None:
        for i in itertools.count():
            answers.append((i, (await bystander.arun(f"echo {i}", session=session)).output))
            if stop.is_set():
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        yield
        stop.set()
    assert answers, "the bystander never answered"
    assert all(output == f"{i}\n" for i, output in answers), answers
    await bystander.close_session(session)


async def usable(sb: Sandbox) -> None:
    """A new session of `sb` runs a command."""
    s = await sb.create_session(f"after{next(_names)}")
    assert (await sb.arun("echo usable", session=s, timeout=30)).output == "usable\n"


@pytest.mark.slow
async def test_fork_bomb(victim: Sandbox, bystander: Sandbox) -> None:
    async with watched(bystander):
        r = await victim.arun("while :; do sleep 1000 & done", timeout=5)
    assert r.timed_out
    await usable(victim)


@pytest.mark.slow
async def test_memory_hog_is_an_oom_with_its_cause(victim: Sandbox, bystander: Sandbox) -> None:
    s = await victim.create_session("hog")
    async with watched(bystander):
        r = await wire_run(victim, s, "python3 -c 'x = bytearray(1 << 30)'", timeout=60)
    assert (r.exit_code, r.oom_killed) == (137, True)
    await usable(victim)


@pytest.mark.slow
async def test_output_flood(victim: Sandbox, bystander: Sandbox) -> None:
    async with watched(bystander):
        r = await victim.arun(
            "head -c 200000000 /dev/zero | tr '\\0' y", output_limit=4096, timeout=120
        )
    assert (r.truncated, r.total_bytes, len(r.output_bytes)) == (True, 200_000_000, 4096)
    assert r.output_path
    await usable(victim)


@pytest.mark.slow
async def test_cpu_hog(victim: Sandbox, bystander: Sandbox) -> None:
    async with watched(bystander):
        r = await victim.arun(
            "for i in 1 2 3 4; do python3 -c 'while 1: pass' & done; wait", timeout=4
        )
    assert r.timed_out
    left = await victim.arun("ps -eo args 2>/dev/null | grep -c 'while [1]' || true")
    assert left.output.strip() == "0"
    await usable(victim)


async def test_disk_fill(victim: Sandbox, bystander: Sandbox) -> None:
    # /dev/shm is the sandbox's own bounded tmpfs: filling it cannot touch the host's disk.
    async with watched(bystander):
        r = await victim.arun("cat /dev/zero > /dev/shm/fill", timeout=60)
    assert r.exit_code == 1
    assert "No space left on device" in r.output
    await usable(victim)


async def test_kill_every_process_inside(victim: Sandbox, bystander: Sandbox) -> None:
    s = await victim.create_session("killer")
    async with watched(bystander):
        await victim.arun("sleep 1234 &", session=s)
        r = await victim.arun("kill -9 -1", session=s, timeout=30)
    # Everything but the sandbox's init is gone; the calling shell may be spared.
    assert not r.timed_out
    assert (r.session_closed, r.exit_code) in ((True, 137), (False, 0))
    if not r.session_closed:
        # The shell may go down just after, with its sandbox: a closed result or a typed error.
        try:
            again = await victim.arun("echo spared", session=s, timeout=30)
        except SessionClosed as exc:
            assert f"session {s!r} is closed" in str(exc)
        else:
            assert again.output == "spared\n" or again.session_closed, again
    # The sandbox's keepalive process is one of "every process": the sandbox may stop.
    try:
        await usable(victim)
    except SandboxFailed as exc:
        assert "the sandbox is not running (its processes have all ended)" in str(exc), exc
    else:
        left = await victim.arun("ps -eo args | grep -c 'sleep 123[4]' || true")
        assert left.output == "0\n"


async def test_exec_replacing_the_shell(victim: Sandbox, bystander: Sandbox) -> None:
    s = await victim.create_session("replaced")
    async with watched(bystander):
        first = await victim.arun("exec sleep 1000", session=s, timeout=1)
        assert first.timed_out or first.session_closed
        if not first.session_closed:
            with pytest.raises(RockError):
                r = await victim.arun("echo never", session=s, timeout=1)
                assert r.session_closed
                raise SessionClosed("closed")
    await usable(victim)


async def test_kill_of_a_sessions_shell_from_outside(victim: Sandbox, bystander: Sandbox) -> None:
    s = await victim.create_session("shot")
    shell = int((await victim.arun("echo $$", session=s)).output)
    async with watched(bystander):
        os.kill(host_pid(victim, shell), signal.SIGKILL)
        try:
            r = await victim.arun("echo never", session=s, timeout=30)
        except SessionClosed as exc:
            assert "is closed" in str(exc)
        else:
            assert (r.session_closed, r.exit_code, r.output) == (True, 137, "")
    await usable(victim)
