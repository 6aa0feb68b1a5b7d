"""Background jobs (`Sandbox.spawn`): detached commands with kept output and real exit codes,
re-attached by id, surviving the caller and an agent restart; every bad argument refused."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from rock_core import AlreadyExists, BadRequest, NotFound
from rock_sdk import Job, Sandbox, SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_leases import running_agent, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


@pytest.fixture(params=[SH_IMAGE, PY_IMAGE], ids=["busybox", "python"])
async def sb(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(image=request.param)) as sandbox:
        yield sandbox


async def read_all(job: Job) -> bytes:
    out = b""
    async for chunk in job.stream():
        out += chunk
    return out


async def test_a_job_keeps_its_output_and_its_own_exit_code(sb: Sandbox) -> None:
    job = await sb.spawn("echo out; echo err >&2; sleep 0.5; printf 'x\\0y'; exit 7")
    assert job.job_id.startswith("job-")
    listed = await sb.jobs()
    assert [j.job_id for j in listed] == [job.job_id]
    assert await read_all(job) == b"out\nerr\nx\0y"
    info = await job.info()
    assert (info.state, info.exit_code, info.output_bytes) == ("exited", 7, 11)
    assert info.command.endswith("exit 7") and not info.truncated


async def test_output_can_be_read_while_the_job_runs(sb: Sandbox) -> None:
    job = await sb.spawn("echo first; sleep 60")
    with anyio.fail_after(20):  # output held back until the job ends would never arrive
        while (await job.read()).data != b"first\n":  # noqa: ASYNC110 (polling the sandbox)
            await anyio.sleep(0.05)
    assert (await job.info()).state == "running"
    await job.kill()


async def test_a_new_handle_reads_from_a_byte_cursor(sb: Sandbox) -> None:
    job = await sb.spawn("seq 1 1000", job_id="counter")
    done = await job.wait(30)
    assert done.exit_code == 0
    whole = b"".join(str(i).encode() + b"\n" for i in range(1, 1001))
    again = sb.job("counter")  # as another program would, by id
    part = await again.read(cursor=10, max_bytes=5)
    assert (part.data, part.next_cursor, part.done) == (whole[10:15], 15, False)
    tail = await again.read(cursor=len(whole) - 4)
    assert (tail.data, tail.done) == (whole[-4:], True)
    assert await read_all(again) == whole


async def test_kill_ends_a_job_with_the_shells_code_for_the_signal(sb: Sandbox) -> None:
    job = await sb.spawn("sleep 100")
    assert (await job.kill()).exit_code == 143
    stubborn = await sb.spawn("trap '' TERM; echo ready; while :; do sleep 0.1; done")
    while b"ready" not in (await stubborn.read()).data:  # noqa: ASYNC110 (polling the sandbox)
        await anyio.sleep(0.05)
    still = await stubborn.kill("TERM")
    assert still.state == "running", "a job that ignores TERM keeps running"
    killed = await stubborn.kill("SIGKILL")
    assert killed.exit_code == 137
    assert (await stubborn.read()).data.startswith(b"ready\n")
    assert (await stubborn.kill(9)).exit_code == 137, "killing an ended job changes nothing"


async def test_output_past_the_limit_is_dropped_without_blocking_the_job(sb: Sandbox) -> None:
    job = await sb.spawn("yes | head -c 200000; echo end >&2", output_limit=1000)
    info = await job.wait(30)
    assert (info.exit_code, info.output_bytes, info.truncated) == (0, 1000, True)
    assert await read_all(job) == b"y\n" * 500


async def test_jobs_end_as_lost_when_the_container_restarts(sb: Sandbox) -> None:
    job = await sb.spawn("sleep 100")
    await sb.stop()
    await sb.start()
    info = await job.info()
    assert (info.state, info.exit_code) == ("lost", None)


async def test_wait_times_out_and_the_job_runs_on(sb: Sandbox) -> None:
    job = await sb.spawn("sleep 3")
    with pytest.raises(TimeoutError):
        await job.wait(0.2)
    assert (await job.info()).state == "running"
    assert (await job.wait(30)).exit_code == 0


async def test_bad_arguments_are_refused_and_nothing_is_started(sb: Sandbox) -> None:
    bad_spawns: list[tuple[dict[str, object], str]] = [
        ({"command": ""}, "non-empty string"),
        ({"command": 5}, "non-empty string"),
        ({"command": "echo \0"}, "NUL"),
        ({"command": "true", "job_id": "../etc"}, "job id"),
        ({"command": "true", "job_id": ""}, "job id"),
        ({"command": "true", "job_id": "a" * 65}, "job id"),
        ({"command": "true", "job_id": 7}, "job id"),
        ({"command": "true", "output_limit": 0}, "output_limit"),
        ({"command": "true", "output_limit": -5}, "output_limit"),
        ({"command": "true", "output_limit": True}, "output_limit"),
        ({"command": "true", "output_limit": 1.5}, "output_limit"),
    ]
    for kwargs, message in bad_spawns:
        with pytest.raises(BadRequest, match=message):
            await sb.spawn(**kwargs)  # type: ignore[arg-type]
    assert await sb.jobs() == []
    job = await sb.spawn("sleep 30", job_id="once")
    with pytest.raises(AlreadyExists, match="once"):
        await sb.spawn("true", job_id="once")
    for cursor in (-1, math.nan, "0"):
        with pytest.raises(BadRequest, match="cursor"):
            await job.read(cursor)  # type: ignore[arg-type]
    for signal in ("NOPE", 999, 1.5, None):
        with pytest.raises(BadRequest, match="signal"):
            await job.kill(signal)  # type: ignore[arg-type]
    for timeout in (-1, math.nan, "1"):
        with pytest.raises(BadRequest, match="timeout"):
            await job.wait(timeout)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no job 'ghost'"):
        await sb.job("ghost").info()
    with pytest.raises(NotFound, match="no job 'ghost'"):
        await sb.job("ghost").kill()
    assert [j.state for j in await sb.jobs()] == ["running"]
    await job.kill("KILL")


@pytest.mark.slow
async def test_a_job_outlives_an_agent_restart_and_its_caller(tmp_path: Path) -> None:
    with running_agent(tmp_path, "jobs") as agent:
        fast = {"heartbeat": 0.3, "heartbeat_timeout": 1.0, "lease": 30}
        async with open_sdk_cluster([agent.address], **fast) as cluster:
            sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE))
            job = await sb.spawn("echo before; sleep 3; echo after; exit 4")
            host = cluster.core.hosts[agent.host_id]
            agent.kill()
            await wait_for(lambda: host.state != "connected", 10, "link loss noticed")
            assert agent.ensure()["started"] is True
            await wait_for(lambda: host.state == "connected", 30, "reconnected")
            again = sb.job(job.job_id)
            assert (await again.wait(30)).exit_code == 4
            assert await read_all(again) == b"before\nafter\n"
