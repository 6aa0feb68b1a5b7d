"""Requests an agent did not announce are refused before they are sent: an older agent
would take a message it cannot decode for garbage and drop the whole link."""

from __future__ import annotations

import pytest

from rock_core import BadRequest, SandboxSpec
from rock_core._images import list_images
from rock_core.testing import open_fake_cluster
from rock_sdk import Sandbox
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


async def test_images_commit_stats_and_timeouts_need_the_capability() -> None:
    # The fake agent announces no capabilities, like an agent from before these features.
    async with open_fake_cluster(1) as cluster:
        with pytest.raises(BadRequest, match=r"fake-0 .* cannot manage images: upgrade"):
            await list_images(cluster)
        await cluster.create_sandbox(SPEC, sandbox_id="c1")
        sandbox = Sandbox.attach(cluster, "c1")
        with pytest.raises(BadRequest, match="cannot commit a sandbox: upgrade rock-agent"):
            await sandbox.commit("img:2")
        with pytest.raises(BadRequest, match="cannot report resource use: upgrade"):
            await sandbox.stats()
        with pytest.raises(BadRequest, match="cannot change timeouts: upgrade"):
            await sandbox.keepalive()
        with pytest.raises(BadRequest, match="cannot enforce timeouts"):
            await cluster.create_sandbox(SandboxSpec(image="img:1", idle_timeout=5.0))
        # The link is still fine.
        assert (await cluster.inspect("c1")).sandbox_id == "c1"
