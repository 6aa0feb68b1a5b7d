"""Checkpoints against real Docker: files survive into forks, forks are independent, a fork to
a second host (over SSH, the checkpoint streamed), deletion, reaping with the owner, a pool
filled from a checkpoint, and bad input. Asyncio only where SSH hosts are involved."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import rock_core
from rock_core import BadRequest, ImageNotFound, SshOptions
from rock_sdk import SandboxCluster, SandboxConfig, open_cluster

from ..cluster._netns import NetnsCluster, open_netns_hosts
from ..conftest import SH_IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SMALL = SandboxConfig(image=SH_IMAGE, memory="32m", cpus=0.1)


def images(reference: str) -> list[str]:
    out = subprocess.run(
        ["docker", "images", "-q", reference], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


async def test_files_survive_into_forks_that_are_independent(sdk: SandboxCluster) -> None:
    parent = await sdk.create_sandbox(SMALL)
    await parent.write_file("/work/state.txt", b"prepared")
    await parent.arun("mkdir -p /work/dir && echo nested > /work/dir/n.txt")
    cp = await parent.checkpoint()
    assert cp.source == parent.sandbox_id and cp.image == f"rock-checkpoint:{cp.checkpoint_id}"
    assert cp.size > 0 and images(cp.image)
    first, second = await sdk.fork(cp, 2, SMALL)
    for fork in (first, second):
        assert await fork.read_file("/work/state.txt") == b"prepared"
        assert (await fork.arun("cat /work/dir/n.txt")).output == "nested\n"
    await first.write_file("/work/state.txt", b"changed in the first")
    assert await second.read_file("/work/state.txt") == b"prepared"
    assert await parent.read_file("/work/state.txt") == b"prepared"
    # The parent keeps running and changing after the checkpoint; forks do not see that.
    await parent.write_file("/work/later.txt", b"after")
    assert (await second.arun("test -e /work/later.txt; echo $?")).output == "1\n"
    for fork in (first, second):
        await fork.delete()
    assert await cp.delete() == []
    assert images(cp.image) == []
    await parent.delete()


async def test_delete_keeps_a_checkpoint_forks_use_until_they_are_gone(
    sdk: SandboxCluster,
) -> None:
    parent = await sdk.create_sandbox(SMALL)
    cp = await parent.checkpoint("it-delete-in-use")
    (fork,) = await cp.fork(1, SMALL)
    kept = await cp.delete()
    assert [(k.checkpoint_id, k.containers) for k in kept] == [("it-delete-in-use", 1)]
    assert images(cp.image)  # still there: a fork uses it
    await fork.delete()
    await parent.delete()
    assert await sdk.delete_checkpoint("it-delete-in-use") == []
    assert images(cp.image) == []
    with pytest.raises(ImageNotFound, match="checkpoint 'it-delete-in-use' is on no connected"):
        await cp.fork(1, SMALL)
    with pytest.raises(ImageNotFound, match="checkpoint 'it-delete-in-use' is on no connected"):
        await cp.delete()


async def test_bad_input_is_refused_clearly(sdk: SandboxCluster) -> None:
    before = {sb.sandbox_id for sb in sdk.sandboxes()}
    parent = await sdk.create_sandbox(SMALL)
    cp = await parent.checkpoint()
    try:
        for bad in (0, -1):
            with pytest.raises(BadRequest, match=f"n must be at least 1, got {bad}"):
                await cp.fork(bad, SMALL)
        for bad_n in (math.nan, "3", None):
            with pytest.raises(BadRequest, match="n must be a whole number of sandboxes"):
                await sdk.fork(cp, bad_n, SMALL)  # type: ignore[arg-type]
        with pytest.raises(BadRequest, match=r"n must be a whole number \(an int\), got 2.0"):
            await sdk.fork(cp, 2.0, SMALL)  # type: ignore[arg-type]
        with pytest.raises(BadRequest, match="checkpoint_id"):
            await parent.checkpoint("Not A Name!")
        with pytest.raises(BadRequest, match="config must be a SandboxConfig"):
            await cp.fork(1, "python")  # type: ignore[arg-type]
        with pytest.raises(Exception, match="already exists") as caught:
            await parent.checkpoint(cp.checkpoint_id)
        assert type(caught.value).__name__ == "AlreadyExists"
        await parent.stop()
        with pytest.raises(BadRequest, match=r"is not running \(exited\): only a running"):
            await parent.checkpoint()
    finally:
        await cp.delete()
    # No fork was left behind by a refused call.
    assert {sb.sandbox_id for sb in sdk.sandboxes()} == before | {parent.sandbox_id}
    await parent.delete()


async def test_a_pool_fills_from_a_checkpoint(sdk: SandboxCluster) -> None:
    parent = await sdk.create_sandbox(SMALL)
    await parent.write_file("/work/warm.txt", b"from the checkpoint")
    cp = await parent.checkpoint()
    pooled = SandboxConfig(image=cp.image, memory="32m", cpus=0.1)
    async with sdk.open_pool(pooled, min_size=2, name="it-ckpt-pool") as pool:
        async with pool.sandbox() as sb:
            assert await sb.read_file("/work/warm.txt") == b"from the checkpoint"
    await parent.delete()
    assert await cp.delete() == []


PROGRAM = textwrap.dedent(
    """\
    import sys, anyio
    from rock_sdk import SandboxConfig, open_cluster

    async def main() -> None:
        async with open_cluster(["local"]) as cluster:
            sb = await cluster.create_sandbox(
                SandboxConfig(image=sys.argv[1], memory="32m", cpus=0.1)
            )
            await sb.checkpoint("it-reaped-" + sys.argv[2])
            await sb.checkpoint("it-kept-" + sys.argv[2], keep=True)
            print("made", flush=True)
            await anyio.sleep_forever()  # killed: the owner goes without cleaning up

    anyio.run(main)
    """
)


@pytest.mark.slow
async def test_checkpoints_are_reaped_with_their_owner_unless_kept(docker_engine: None) -> None:
    tag = os.urandom(3).hex()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", PROGRAM, SH_IMAGE, tag]
    async with await anyio.open_process(command, env=env, stderr=None) as program:
        assert program.stdout is not None
        said = b""
        while not said.endswith(b"\n"):  # an unbuffered child may write it in two pieces
            said += await program.stdout.receive()
        assert said == b"made\n"
        assert images(f"rock-checkpoint:it-reaped-{tag}")
        program.kill()
    # Its private agent sees its owner gone and removes its sandbox, then its checkpoint.
    for _ in range(100):
        if not images(f"rock-checkpoint:it-reaped-{tag}"):
            break
        await anyio.sleep(0.1)
    assert images(f"rock-checkpoint:it-reaped-{tag}") == []
    assert images(f"rock-checkpoint:it-kept-{tag}")
    async with open_cluster(["local"]) as cluster:
        listed = {c.checkpoint_id: c for c in await cluster.checkpoints()}
        assert listed[f"it-kept-{tag}"].kept
        assert f"it-reaped-{tag}" not in listed
        assert await cluster.delete_checkpoint(f"it-kept-{tag}") == []
    assert images(f"rock-checkpoint:it-kept-{tag}") == []


# ------------------------------------------------------------------ a second host over SSH


@pytest.fixture(scope="module")
def netns() -> Iterator[NetnsCluster]:
    with open_netns_hosts(2) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def agent_command(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A `rock-agent` that runs this checkout's code (an SSH session does not inherit the
    test's PYTHONPATH)."""
    source = Path(rock_core.__file__).parent.parent
    script = tmp_path_factory.mktemp("agent") / "rock-agent"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={source} exec {sys.executable} -m rock_agent "$@"\n')
    script.chmod(0o755)
    return str(script)


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_fork_on_another_host_gets_the_checkpoint_streamed(
    docker_engine: None, netns: NetnsCluster, agent_command: str, anyio_backend: str
) -> None:
    ssh = SshOptions(known_hosts=str(netns.known_hosts), client_keys=[str(netns.client_key)])
    h1, h2 = netns
    urls = [f"{h.url}&agent={agent_command}" for h in (h1, h2)]
    async with open_cluster(urls, ssh=ssh) as cluster:
        parent = await cluster.create_sandbox(SMALL)
        source = cluster.core.record(parent.sandbox_id).host
        assert source in (h1.host_id, h2.host_id)
        other = h2.host_id if source == h1.host_id else h1.host_id
        await parent.write_file("/work/moved.txt", b"streamed")
        cp = await parent.checkpoint()
        assert cp.host_id == source
        held = {(c.host_id, c.checkpoint_id) for c in await cluster.checkpoints()}
        # The engine is shared, but the other host does not hold it until it is streamed.
        assert held == {(source, cp.checkpoint_id)}
        cluster.drain_host(source)
        forks = await cluster.fork(cp, 3, SMALL)
        assert {cluster.core.record(f.sandbox_id).host for f in forks} == {other}
        for fork in forks:
            assert await fork.read_file("/work/moved.txt") == b"streamed"
        held = {(c.host_id, c.checkpoint_id) for c in await cluster.checkpoints()}
        assert held == {(source, cp.checkpoint_id), (other, cp.checkpoint_id)}
        for fork in forks:
            await fork.delete()
        assert await cp.delete() == []
        assert await cluster.checkpoints() == []
