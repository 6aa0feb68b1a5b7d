"""Checkpoints in the core against fake agents (both backends, virtual time): a fork streams
the checkpoint once per host however many forks land there, bad input is refused before
anything starts, deletion, and the fake agent's own rules (a create of a checkpoint it does not
hold fails; an owner's checkpoints go with its last connection)."""

from __future__ import annotations

import math
from collections import Counter

import anyio
import pytest

from rock_core import BadRequest, Checkpoint, ImageNotFound, SandboxSpec, SandboxState, open_cluster
from rock_core._checkpoints import MAX_FORKS
from rock_core.protocol import ExportCheckpoint, ImportCheckpoint, StopSandbox
from rock_core.testing import FakeAgent, FakeAgentConnector, open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


def sent(agent: FakeAgent, kind: type) -> int:
    return sum(1 for message in agent.received if isinstance(message, kind))


async def test_forks_on_a_host_that_lacks_it_stream_it_there_once() -> None:
    async with open_fake_cluster(2, cpus=16, memory=64 << 30) as cluster:
        parent = await cluster.create_sandbox(SPEC)
        cp = await cluster.checkpoint(parent.sandbox_id, name="ck-once")
        assert isinstance(cp, Checkpoint)
        assert (cp.checkpoint_id, cp.host_id, cp.image) == (
            "ck-once",
            parent.host,
            "rock-checkpoint:ck-once",
        )
        assert cp.source == parent.sandbox_id
        source = cluster.agents[parent.host]
        (other,) = [a for a in cluster.agents.values() if a is not source]
        cluster.drain_host(parent.host)
        forks = await cluster.fork(cp, 6, SPEC)
        assert Counter(f.host for f in forks) == {other.host_id: 6}
        assert all(f.spec.image == "rock-checkpoint:ck-once" for f in forks)
        assert (sent(source, ExportCheckpoint), sent(other, ImportCheckpoint)) == (1, 1)
        # Known now: more forks there copy nothing again.
        await cluster.fork("ck-once", 2, SPEC)
        assert sent(other, ImportCheckpoint) == 1
        held = sorted((c.host_id, c.containers) for c in await cluster.checkpoints())
        assert held == sorted([(source.host_id, 0), (other.host_id, 8)])


async def test_bad_counts_and_missing_checkpoints_are_refused_before_any_start() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 << 30) as cluster:
        parent = await cluster.create_sandbox(SPEC)
        cp = await cluster.checkpoint(parent.sandbox_id)
        assert cp.checkpoint_id.startswith("ck-") and len(cp.checkpoint_id) == 13
        for bad, words in [
            (0, "n must be at least 1, got 0"),
            (-2, "n must be at least 1, got -2"),
            (math.nan, "n must be a whole number of sandboxes from 1 up, got nan"),
            (True, "n must be a whole number of sandboxes from 1 up, got True"),
            (3.0, "n must be a whole number (an int), got 3.0"),
        ]:
            with pytest.raises(BadRequest) as caught:
                await cluster.fork(cp, bad, SPEC)  # type: ignore[arg-type]
            assert str(caught.value) == words
        with pytest.raises(BadRequest, match="expected a Checkpoint or a checkpoint id"):
            await cluster.fork(None, 1, SPEC)  # type: ignore[arg-type]
        with pytest.raises(ImageNotFound, match="checkpoint 'ck-none' is on no connected host"):
            await cluster.fork("ck-none", 1, SPEC)
        assert len(cluster.records()) == 1  # nothing was started
        assert await cluster.delete_checkpoint(cp) == []
        with pytest.raises(ImageNotFound, match=f"checkpoint '{cp.checkpoint_id}' is on no"):
            await cluster.delete_checkpoint(cp)
        with pytest.raises(ImageNotFound, match=f"checkpoint '{cp.checkpoint_id}' is on no"):
            await cluster.fork(cp, 1, SPEC)
        # A plain create naming a deleted checkpoint's image fails as clearly.
        with pytest.raises(ImageNotFound, match=f"checkpoint '{cp.checkpoint_id}' is on no"):
            await cluster.create_sandbox(SandboxSpec(image=cp.image, cpus=1, memory=1 << 30))


async def test_a_checkpoint_needs_a_running_sandbox_and_a_free_name() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 << 30) as cluster:
        parent = await cluster.create_sandbox(SPEC)
        await cluster.checkpoint(parent.sandbox_id, name="taken")
        with pytest.raises(Exception, match="checkpoint 'taken' already exists") as caught:
            await cluster.checkpoint(parent.sandbox_id, name="taken")
        assert type(caught.value).__name__ == "AlreadyExists"
        with pytest.raises(BadRequest, match="checkpoint_id"):
            await cluster.checkpoint(parent.sandbox_id, name="Bad Name")
        with pytest.raises(BadRequest, match="keep must be True or False"):
            await cluster.checkpoint(parent.sandbox_id, keep="yes")  # type: ignore[arg-type]
        await cluster.stop_sandbox(parent.sandbox_id)
        with pytest.raises(BadRequest, match=r"is not running \(exited\): only a running"):
            await cluster.checkpoint(parent.sandbox_id)
        assert sent(cluster.agents[parent.host], StopSandbox) == 1


async def test_the_fake_agent_reaps_an_owners_checkpoints_unless_kept() -> None:
    agent = FakeAgent(host_id="solo", cpus=16, memory=64 << 30)
    async with open_cluster([FakeAgentConnector(agent)], owner="first") as cluster:
        parent = await cluster.create_sandbox(SPEC)
        await cluster.checkpoint(parent.sandbox_id, name="goes")
        await cluster.checkpoint(parent.sandbox_id, name="stays", keep=True)
    assert sorted(agent.checkpoints) == ["stays"]
    async with open_cluster([FakeAgentConnector(agent)], owner="second") as cluster:
        (kept,) = await cluster.checkpoints()
        assert (kept.checkpoint_id, kept.kept) == ("stays", True)
        (fork,) = await cluster.fork("stays", 1, SPEC)
        assert fork.spec.image == "rock-checkpoint:stays"


async def test_a_cancelled_fork_leaves_none_of_its_sandboxes_running() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 << 30) as cluster:
        parent = await cluster.create_sandbox(SPEC)
        cp = await cluster.checkpoint(parent.sandbox_id, name="ck-cancel")
        with anyio.move_on_after(5) as scope:  # 15 start, 5 wait for room: cancelled there
            await cluster.fork(cp, 20, SPEC)
        assert scope.cancelled_caught
        alive = [r.sandbox_id for r in cluster.records() if r.state is SandboxState.RUNNING]
        assert alive == [parent.sandbox_id]


async def test_a_huge_fork_count_is_refused_before_any_start() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 << 30) as cluster:
        parent = await cluster.create_sandbox(SPEC)
        cp = await cluster.checkpoint(parent.sandbox_id)
        with pytest.raises(BadRequest) as caught:
            await cluster.fork(cp, 10**12, SPEC)
        assert str(caught.value) == f"n must be at most {MAX_FORKS}, got {10**12}"
        assert len(cluster.records()) == 1
