"""The runtime seam's conformance suite (`rock_agent.testing.CHECKS`), run on `FakeRuntime`
always and on `DockerRuntime` with the real engine (marked `docker`), so the fake cannot drift
from the real thing. Asyncio only: the agent side is (aiodocker)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from rock_agent._docker import DockerRuntime, open_docker
from rock_agent._runtime import ContainerRuntime
from rock_agent.testing import CHECKS, FakeRuntime, check_runtime

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def fake() -> AsyncIterator[ContainerRuntime]:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        yield runtime


@asynccontextmanager
async def docker() -> AsyncIterator[ContainerRuntime]:
    # A host id of its own: the event feed and listings see only this runtime's sandboxes.
    async with open_docker(None) as client:
        yield DockerRuntime(client, f"conformance-{secrets.token_hex(4)}")


@pytest.mark.parametrize("name", list(CHECKS))
async def test_fake_runtime(name: str) -> None:
    async with fake() as runtime:
        await CHECKS[name](runtime, SH_IMAGE)


@pytest.mark.docker
@pytest.mark.parametrize("name", list(CHECKS))
async def test_docker_runtime(name: str, docker_engine: None) -> None:
    async with docker() as runtime:
        await CHECKS[name](runtime, SH_IMAGE)


async def test_check_runtime_runs_every_check_and_names_a_failure() -> None:
    await check_runtime(fake, SH_IMAGE)

    class Broken(FakeRuntime):
        async def remove(self, sandbox_id: str) -> None:
            return  # forgets to remove

    @asynccontextmanager
    async def broken() -> AsyncIterator[ContainerRuntime]:
        async with Broken(images=[SH_IMAGE]) as runtime:
            yield runtime

    with pytest.raises(AssertionError, match="runtime check 'remove' failed: AssertionError"):
        await check_runtime(broken, SH_IMAGE)
