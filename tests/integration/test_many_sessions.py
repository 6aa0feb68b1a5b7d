"""Many sessions in one agent at once: each holds an engine stream for its whole life."""

from __future__ import annotations

import anyio
import pytest

from rock_sdk import Sandbox

pytestmark = pytest.mark.anyio

SESSIONS = 130  # past aiohttp's default cap of 100 connections per connector


async def test_more_sessions_than_a_connection_pool_holds(py_sandbox: Sandbox) -> None:
    names = [f"many-{i}" for i in range(SESSIONS)]
    outputs: dict[str, str] = {}

    async def open_and_run(name: str) -> None:
        await py_sandbox.create_session(name)
        outputs[name] = (await py_sandbox.arun(f"echo {name}", session=name)).output

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(open_and_run, name)
        # Every session still answers, and the agent still serves new requests.
        assert outputs == {name: f"{name}\n" for name in names}
        assert (await py_sandbox.arun("echo still", session=names[0])).output == "still\n"
        for name in names:
            await py_sandbox.close_session(name)
