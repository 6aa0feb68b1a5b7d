"""The real stack (embedded core, local agent, Docker) driven from trio."""

from __future__ import annotations

import pytest
import trio

from rock_core import open_cluster
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import SH_IMAGE


@pytest.mark.trio
async def test_sandbox_under_trio(docker_engine: None) -> None:
    async with open_cluster(["local"]) as cluster:
        async with Sandbox(SandboxConfig(image=SH_IMAGE), cluster=cluster) as sb:
            results = {}

            async def run(name: str) -> None:
                await sb.create_session(name)
                results[name] = (await sb.arun(f"cd /tmp && echo {name}", session=name)).output

            async with trio.open_nursery() as nursery:
                for name in ("a", "b", "c"):
                    nursery.start_soon(run, name)
            assert results == {"a": "a\n", "b": "b\n", "c": "c\n"}
            r = await sb.arun("sleep 30", session="a", timeout=0.5)
            assert r.timed_out
            await sb.write_file("/tmp/t", b"trio")
            assert await sb.read_file("/tmp/t") == b"trio"
