"""Interactive commands at their edges: patterns that would cost the agent a compile, a flood
under a pattern that never matches, and a command whose shell never runs it."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from rock_core import Cluster
from rock_sdk import (
    BadRequest,
    Sandbox,
    SandboxConfig,
    SessionClosed,
    SessionNotFound,
    TimedOut,
    open_cluster,
)

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

_names = itertools.count()
DEEP = "(" * 2000 + "a" + ")" * 2000  # under the 4096-character limit of a pattern


async def fresh(sb: Sandbox) -> str:
    return await sb.create_session(f"x{next(_names)}")


async def test_costly_patterns_are_refused_and_the_program_goes_on(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    proc = await sandbox.start_interactive("cat", session=s)
    with pytest.raises(
        BadRequest,
        match=r"^bad expect pattern 'a\{1000000000\}': a repeat count of 1000000000 is above "
        r"the limit of 10000$",
    ):
        await proc.expect("ok", "a{1000000000}", timeout=10)
    with pytest.raises(
        BadRequest, match=r"^bad expect pattern '\(\(\(.*\.\.\.: its groups nest more than 100"
    ):
        await proc.expect(DEEP, timeout=10)
    with pytest.raises(BadRequest, match=r"'\(a\{1000\}\)\{1000\}': its counted repeats expand"):
        await proc.expect("(a{1000}){1000}", timeout=10)
    with pytest.raises(BadRequest, match=r"^bad expect pattern 'a\(': missing \)"):
        await proc.expect("a(", timeout=10)
    await proc.sendline("still here")
    m = await proc.expect(r"here\n", timeout=20)
    assert (m.index, m.before, m.match) == (0, "still ", "here\n")
    await proc.interrupt()
    with anyio.fail_after(60):
        await proc.wait(timeout=30)


def agent_peaks_mib() -> dict[int, int]:
    """The peak memory (VmHWM, MiB) of each agent this test process started, by pid."""
    peaks = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields["PPid"]) == os.getpid() and b"rock_agent" in cmdline:
            peaks[int(status.parent.name)] = int(fields["VmHWM"].split()[0]) // 1024
    return peaks


@pytest.fixture
async def own_agent(docker_engine: None) -> AsyncIterator[tuple[Cluster, int]]:
    """A cluster with an agent of its own, whose memory only this test uses, and its pid."""
    before = set(agent_peaks_mib())
    async with open_cluster(["local"]) as cluster:
        (pid,) = set(agent_peaks_mib()) - before
        yield cluster, pid


async def test_a_flood_under_a_pattern_that_never_matches(own_agent: tuple[Cluster, int]) -> None:
    cluster, agent = own_agent
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="256m", cpus=0.5), cluster=cluster)
    await sb.start()
    try:
        s, other = await fresh(sb), await fresh(sb)
        proc = await sb.start_interactive("yes", session=s, output_limit=1000)
        answered: list[str] = []

        async def bystander() -> None:
            for i in range(5):
                answered.append((await sb.arun(f"echo {i}", session=other)).output)

        async with anyio.create_task_group() as tg:
            tg.start_soon(bystander)
            with pytest.raises(TimedOut) as timed_out:
                await proc.expect("NEVER", timeout=20)
        assert str(timed_out.value) == f"session {s!r}: no output matched ['NEVER'] within 20 s"
        assert timed_out.value.details["output"].endswith("y\ny\n")
        assert answered == [f"{i}\n" for i in range(5)]
        await proc.interrupt()
        with anyio.fail_after(60):
            result = await proc.wait(timeout=30)
        # What the window dropped is the command's output: counted, and in the output file.
        assert (result.truncated, result.output) == (True, "y\n" * 500)
        assert result.total_bytes > 1 << 20
        kept = await sb.arun(f"wc -c < {result.output_path}", session=other)
        assert int(kept.output) == result.total_bytes
        print("PEAK", agent_peaks_mib()[agent])
        assert agent_peaks_mib()[agent] < 100  # a window of 1 MiB, not the whole flood
    finally:
        await sb.delete()


async def shell_pid(sb: Sandbox, session: str) -> str:
    return (await sb.arun("echo $$", session=session)).output.strip()


async def test_a_command_the_shell_never_runs_is_a_timeout(sandbox: Sandbox) -> None:
    s, other = await fresh(sandbox), await fresh(sandbox)
    pid = await shell_pid(sandbox, s)
    await sandbox.arun(f"kill -STOP {pid}", session=other)
    with anyio.fail_after(60), pytest.raises(TimedOut) as timed_out:
        await sandbox.start_interactive("cat", session=s)
    assert str(timed_out.value) == (
        f"session {s!r}: the interactive command 'cat' did not start within 15 s (the shell did "
        "not run it); the session was closed, as the shell could still read later input as "
        "commands"
    )
    with pytest.raises(SessionClosed, match=rf"^session {s!r} is closed \(its shell has exited\)"):
        await sandbox.arun("echo hi", session=s)
    with pytest.raises(SessionNotFound):
        await sandbox.arun("echo hi", session=s)
    # The stopped shell was killed: gone, or a zombie until the engine reaps it.
    state = await sandbox.arun(f"grep State: /proc/{pid}/status 2>/dev/null || true", session=other)
    assert state.output in ("", "State:\tZ (zombie)\n")


async def test_a_shell_that_dies_before_the_command_starts_is_a_closed_session(
    sandbox: Sandbox,
) -> None:
    s, other = await fresh(sandbox), await fresh(sandbox)
    pid = await shell_pid(sandbox, s)
    await sandbox.arun(f"kill -STOP {pid}", session=other)
    failed: list[BaseException] = []

    async def start() -> None:
        try:
            await sandbox.start_interactive("cat", session=s)
        except SessionClosed as exc:
            failed.append(exc)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await anyio.sleep(1)  # the start waits for a start line the stopped shell never prints
            await sandbox.arun(f"kill -KILL {pid}", session=other)
    assert [str(exc) for exc in failed] == [
        f"session {s!r} is closed: its shell exited before the interactive command 'cat' started"
    ]
    with pytest.raises(SessionClosed, match=rf"^session {s!r} is closed \(its shell has exited\)"):
        await sandbox.arun("echo hi", session=s)
    with pytest.raises(SessionNotFound):
        await sandbox.arun("echo hi", session=s)
