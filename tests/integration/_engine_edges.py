"""Helpers shared by the engine-edge tests (`test_engine_edges`, `test_engine_missing`,
`test_engine_refusals`): the host id their runtimes use, and a socket agent's process."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import anyio

HOST = "edge"


async def read_all(stream: Any) -> bytes:
    chunks = []
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            chunks.append(await stream.receive())
    return b"".join(chunks)


async def log_records(agent: Any) -> list[dict[str, Any]]:
    """What an agent process that has ended logged: one JSON record a line (so no traceback),
    and it exited 0."""
    assert agent.stdout is not None
    lines = (await read_all(agent.stdout)).decode().splitlines()
    assert agent.returncode == 0, lines
    return [json.loads(line) for line in lines]


async def wait_for_socket(path: Path) -> None:
    with anyio.fail_after(30):
        while not path.exists():  # noqa: ASYNC110 (another process makes it)
            await anyio.sleep(0.05)
