"""Lost work: a bad request, or a link that closes while its owner lives, costs no sandbox."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import msgspec
import pytest

from rock_core import BadRequest, open_agent_connection
from rock_core._channel import SplitStream
from rock_core._owner import local_owner
from rock_core._protocol import CreateSandbox, Ping, Pong, SandboxReply, SandboxSpec
from rock_sdk import SandboxConfig, open_cluster

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio


async def containers_of(sandbox_id: str) -> list[str]:
    ps = ["docker", "ps", "-aq", "--filter", f"label=rock.sandbox={sandbox_id}"]
    return (await anyio.run_process(ps)).stdout.decode().split()


async def test_a_mistyped_value_fails_alone_and_loses_nothing(docker_engine: None) -> None:
    async with open_cluster(["local"]) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        with pytest.raises(
            BadRequest, match=r"^invalid sandbox config: env\[\.\.\.\]: Expected `str`"
        ):
            await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, env={"A": 1}))  # type: ignore[dict-item]
        # The same mistake sent past the SDK, straight onto the link to the local agent:
        conn = cluster.core.connection(sb.sandbox_id)
        bad = {"op": "create", "id": conn.next_id(), "sandbox_id": "x", "spec": {"image": 1}}
        await conn._channel.send_payload(msgspec.msgpack.encode(bad))
        assert isinstance(await conn.call(Ping(id=conn.next_id()), Pong), Pong)
        assert not conn.closed, "one bad request never closes the link"
        assert (await sb.arun("echo alive")).output == "alive\n"
        assert await containers_of(sb.sandbox_id)


async def test_a_local_agent_keeps_a_live_owner_s_sandboxes_when_the_link_closes(
    docker_engine: None,
) -> None:
    owner_process = await anyio.open_process(["sleep", "600"])
    agent = await anyio.open_process(
        [sys.executable, "-m", "rock_agent", "serve", "--stdio", "--log-level", "WARNING"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert agent.stdin is not None and agent.stdout is not None
    sandbox_id = "linger-1"
    try:
        stream = SplitStream(agent.stdout, agent.stdin)
        owner = local_owner(owner_process.pid)
        async with open_agent_connection(stream, owner=owner, name="local") as conn:
            spec = SandboxSpec(image=SH_IMAGE, memory=64 << 20)
            create = CreateSandbox(id=conn.next_id(), sandbox_id=sandbox_id, spec=spec)
            await conn.call(create, SandboxReply)
        # The link is closed; its owner still runs: the agent keeps the sandbox and waits.
        await anyio.sleep(2.0)
        assert agent.returncode is None, "the agent waits while the owner lives"
        assert await containers_of(sandbox_id), "a closed link is not 'owner gone'"
        owner_process.kill()
        await owner_process.wait()
        with anyio.fail_after(60):  # a hang detector, not a timing claim
            await agent.wait()
        assert not await containers_of(sandbox_id), "reaped once its owner is gone"
    finally:
        if owner_process.returncode is None:
            owner_process.kill()
        if agent.returncode is None:
            agent.kill()
        leftover = await containers_of(sandbox_id)
        if leftover:
            await anyio.run_process(["docker", "rm", "-f", *leftover], check=False)


async def test_an_owner_named_by_its_program_is_kept_while_the_program_lives(
    docker_engine: None,
) -> None:
    # `open_cluster(["local"], owner="run-42")`: the owner names no process, so the process
    # that started the stdio agent stands for the program. Here that is a shell between the
    # test and the agent, so that it can end while the test goes on.
    launcher = await anyio.open_process(
        [
            "sh",
            "-c",
            'exec 3<&0; "$0" -m rock_agent serve --stdio --log-level WARNING <&3 3<&- & wait',
            sys.executable,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert launcher.stdin is not None and launcher.stdout is not None
    sandbox_id = "linger-named"
    agent_pid = 0
    try:
        stream = SplitStream(launcher.stdout, launcher.stdin)
        async with open_agent_connection(stream, owner="run-42", name="local") as conn:
            spec = SandboxSpec(image=SH_IMAGE, memory=64 << 20)
            create = CreateSandbox(id=conn.next_id(), sandbox_id=sandbox_id, spec=spec)
            await conn.call(create, SandboxReply)
        await anyio.sleep(2.0)
        assert await containers_of(sandbox_id), "a closed link is not 'owner gone'"
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text()
        agent_pid = int(children.split()[0])
        launcher.kill()  # the program ends
        await launcher.wait()
        for _ in range(300):  # a hang detector (60 s), not a timing claim
            if not await containers_of(sandbox_id):
                break
            await anyio.sleep(0.2)
        else:
            raise AssertionError("not reaped once the program that started the agent ended")
    finally:
        if launcher.returncode is None:
            launcher.kill()
        if agent_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent_pid, signal.SIGKILL)
        leftover = await containers_of(sandbox_id)
        if leftover:
            await anyio.run_process(["docker", "rm", "-f", *leftover], check=False)
