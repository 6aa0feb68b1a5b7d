"""Forgetting deleted records reads the deletions in order, not every record (`_deleted_log`)."""

from __future__ import annotations

import time

import pytest

from rock_core import SandboxSpec, SandboxState
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


async def test_forgets_only_records_deleted_before_the_time_and_keeps_a_new_one_of_the_id() -> None:
    async with open_fake_cluster(1, cpus=64, memory=64 << 30, images=["img:1"]) as cluster:
        for name in ("a", "b", "c", "d"):
            await cluster.create_sandbox(SPEC, sandbox_id=name)
        await cluster.delete_sandbox("a")
        await cluster.delete_sandbox("b")
        await cluster.create_sandbox(SPEC, sandbox_id="b")  # the id taken again
        cut = time.time() + 1e-3
        while time.time() <= cut:  # the wall clock moves on (deletion times are wall-clock)
            pass
        await cluster.delete_sandbox("c")
        assert len(cluster.state.deleted) == 3
        cluster.state.forget_deleted(cut)
        assert sorted(r.sandbox_id for r in cluster.records()) == ["b", "c", "d"]
        assert cluster.record("b").state is SandboxState.RUNNING
        assert cluster.record("c").state is SandboxState.DELETED
        assert len(cluster.state.deleted) == 1  # c: deleted after the cut, kept for later
        cluster.state.forget_deleted(time.time() + 1)
        assert sorted(r.sandbox_id for r in cluster.records()) == ["b", "d"]
        assert len(cluster.state.deleted) == 0
