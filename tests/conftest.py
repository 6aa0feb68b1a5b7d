"""Shared test settings: which images the integration tests use, and the leak check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from rock_agent import _procs
from rock_core._owner import local_owner_alive

PY_IMAGE = os.environ.get("ROCK_TEST_PY_IMAGE", "python:3.11")
SH_IMAGE = os.environ.get("ROCK_TEST_SH_IMAGE", "rock-test/busybox:latest")


def labelled_containers(label: str) -> list[str]:
    """Ids of every container (any state) of this engine carrying `label` ("key=value")."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def rock_containers() -> list[str]:
    """Ids of every container a rock agent made on this engine."""
    return labelled_containers("rock.managed=1")


def _ours_or_orphaned(container_ids: list[str]) -> list[str]:
    """The containers owned by this test process, or by a local process that is gone.

    Containers of other live programs (another test run on the same engine) are not ours to
    count as leaks.
    """
    if not container_ids:
        return []
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{.Id}} {{index .Config.Labels "rock.owner"}}',
            *container_ids,
        ],
        capture_output=True,
        text=True,
    ).stdout
    mine = f"local:{socket.gethostname()}:{os.getpid()}:"
    found = []
    for line in out.splitlines():
        cid, _, owner = line.partition(" ")
        alive = local_owner_alive(owner, socket.gethostname(), _procs.alive, _procs.start_time)
        if owner.startswith(mine) or alive is not True:
            found.append(cid)
    return found


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A real engine with the test images; fails (never skips) when the host is not set up."""
    for image in (PY_IMAGE, SH_IMAGE):
        result = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        if result.returncode != 0:
            pytest.fail(f"image {image} is missing: run `bash scripts/setup-host.sh` first")
    before = set(rock_containers())
    yield
    leaked = sorted(_ours_or_orphaned(sorted(set(rock_containers()) - before)))
    if leaked:
        details = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Labels}}", *leaked],
            capture_output=True,
            text=True,
        ).stdout
        subprocess.run(["docker", "rm", "-f", *leaked], capture_output=True)
        pytest.fail(f"the tests leaked {len(leaked)} container(s): {details}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


__all__ = ["PY_IMAGE", "SH_IMAGE", "json", "rock_containers"]
