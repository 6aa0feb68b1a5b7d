"""Integration fixtures: one embedded core with a local agent per module, real Docker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rock_core import Cluster, open_cluster
from rock_sdk import Sandbox, SandboxCluster, SandboxConfig

from ..conftest import PY_IMAGE, SH_IMAGE
from ._sdk_arguments import SMALL


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # The agent side (aiodocker) is asyncio-only; these tests drive the SDK on asyncio. The
    # trio runs of the core are in tests/core and tests/integration/test_trio.py.
    return "asyncio"


@pytest.fixture(scope="module")
async def cluster(docker_engine: None) -> AsyncIterator[Cluster]:
    async with open_cluster(["local"]) as c:
        yield c


@pytest.fixture(scope="module", params=[PY_IMAGE, SH_IMAGE], ids=["bash", "sh"])
async def sandbox(request: pytest.FixtureRequest, cluster: Cluster) -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(image=request.param, memory="512m", cpus=1), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


@pytest.fixture(scope="module")
async def py_sandbox(cluster: Cluster) -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, memory="512m", cpus=1), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


@pytest.fixture(scope="module")
def sdk(cluster: Cluster) -> SandboxCluster:
    return SandboxCluster(cluster)


@pytest.fixture(scope="module")
async def target(sdk: SandboxCluster) -> AsyncIterator[Sandbox]:
    """The sandbox of a module's SDK argument checks (`_sdk_arguments`), with a file that is
    no UTF-8 in it."""
    sandbox = await sdk.create_sandbox(SMALL)
    await sandbox.write_file("/tmp/binary", b"ab\xffcd")
    try:
        yield sandbox
    finally:
        await sandbox.delete()
