"""Reliability fixtures: the integration suite's (one embedded core with a local agent per
module, real Docker), reused as they are, and socket agents of a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..integration.conftest import anyio_backend, cluster, py_sandbox, sandbox
from ._agents import SocketAgent

__all__ = ["anyio_backend", "cluster", "py_sandbox", "sandbox", "socket_agent"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "reliability" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def socket_agent(docker_engine: None, tmp_path: Path) -> Iterator[SocketAgent]:
    """A socket agent of this test alone; its containers must be gone when the test ends."""
    agent = SocketAgent(tmp_path).start()
    try:
        yield agent
    finally:
        agent.stop()
        leaked = agent.containers()
        agent.remove_containers()
        assert not leaked, f"containers left behind: {leaked}"
