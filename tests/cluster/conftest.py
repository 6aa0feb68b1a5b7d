"""Multi-host fixtures: three hosts made from network namespaces, real sshd, real Docker.

Every test here is marked `docker` and checked for leaked containers on its own (before and
after), on top of the session-wide check of `docker_engine`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import rock_containers
from ._netns import NetnsCluster, open_netns_hosts

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # asyncssh (the transport) and aiodocker (the agents) are asyncio-only.
    return "asyncio"


@pytest.fixture(scope="module")
def netns_hosts(docker_engine: None) -> Iterator[NetnsCluster]:
    """Three hosts ``h1``..``h3``, each with its own address and sshd, for one test module."""
    with open_netns_hosts(3) as cluster:
        yield cluster


def _made_here(container_ids: list[str]) -> list[str]:
    """The containers this test process made: owned by it, or on one of its namespace hosts.

    A host's id (in the container's labels) starts with ``rock-<pid>-`` of the process that
    built it; other test runs sharing the engine are left alone.
    """
    if not container_ids:
        return []
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}", *container_ids],
        capture_output=True,
        text=True,
    ).stdout
    owner = f"local:{socket.gethostname()}:{os.getpid()}:"
    host = f"rock-{os.getpid()}-"
    found = []
    for line in out.splitlines():
        cid, _, labels = line.partition(" ")
        values = [str(v) for v in (json.loads(labels) or {}).values()]
        if any(v.startswith(owner) or v.startswith(host) for v in values):
            found.append(cid)
    return found


@pytest.fixture(autouse=True)
def no_leaked_containers(docker_engine: None) -> Iterator[None]:
    """Fail the test that leaves behind a container it made (see `_made_here`)."""
    before = set(rock_containers())
    yield
    leaked = _made_here(sorted(set(rock_containers()) - before))
    if leaked:
        subprocess.run(["docker", "rm", "-f", *leaked], capture_output=True)
        pytest.fail(f"this test leaked {len(leaked)} container(s): {leaked}")
