"""Reliability fixtures: real agents of their own, and the leak check of the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._agents import SocketAgent


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
