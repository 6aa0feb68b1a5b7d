"""Which container engine an agent drives (`rock-agent serve --runtime docker|podman|auto`),
and opening it: the engine's client and its `ContainerRuntime`.

Rules:
- The choice is a plain function of the flag, the engine URL (``--docker``/``DOCKER_HOST``),
  the environment and which sockets exist (`pick_runtime`): no engine is asked, so an agent
  still starts at once while its engine is down.
- ``auto``: a URL given is Docker's unless its socket path names podman; with none, Docker's
  socket if it is there, else the user's (or root's) Podman socket if it is there, else Podman
  if the ``podman`` program is installed, else Docker (whose absence the agent then reports as
  it always has).
- Podman's socket is ``$XDG_RUNTIME_DIR/podman/podman.sock`` for a user, as ``podman system
  service`` makes it, and ``/run/podman/podman.sock`` for root. An agent that picks Podman and
  finds no service answering starts one itself (`_podman_service`), a child of the agent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from rock_core import BadRequest

from ._docker import DockerRuntime, open_docker
from ._podman import PodmanRuntime
from ._podman_service import open_podman_service

RuntimeKind = Literal["docker", "podman"]
RUNTIME_CHOICES = ("docker", "podman", "auto")
DOCKER_SOCKET = "/var/run/docker.sock"
ROOT_PODMAN_SOCKET = "/run/podman/podman.sock"


def podman_socket(env: Mapping[str, str], euid: int) -> str:
    """Where this user's Podman service listens (root's: `ROOT_PODMAN_SOCKET`)."""
    if euid == 0:
        return ROOT_PODMAN_SOCKET
    runtime = env.get("XDG_RUNTIME_DIR") or f"/tmp/podman-run-{euid}"
    return f"{runtime}/podman/podman.sock"


def pick_runtime(
    flag: str,
    url: str | None,
    env: Mapping[str, str],
    *,
    euid: int,
    exists: Callable[[str], bool] = os.path.exists,
    installed: Callable[[str], bool] = lambda name: shutil.which(name) is not None,
) -> tuple[RuntimeKind, str]:
    """The engine to drive and its URL, by the module's rules. `BadRequest` for a bad flag."""
    if flag not in RUNTIME_CHOICES:
        raise BadRequest(f"--runtime is one of {', '.join(RUNTIME_CHOICES)}, got {flag!r}")
    own_podman = f"unix://{podman_socket(env, euid)}"
    if flag == "docker":
        return "docker", url or f"unix://{DOCKER_SOCKET}"
    if flag == "podman":
        return "podman", url or own_podman
    if url:
        return ("podman" if "podman" in url.rpartition("/")[2] else "docker"), url
    if exists(DOCKER_SOCKET):
        return "docker", f"unix://{DOCKER_SOCKET}"
    if exists(podman_socket(env, euid)) or installed("podman"):
        return "podman", own_podman
    return "docker", f"unix://{DOCKER_SOCKET}"


@asynccontextmanager
async def open_runtime(
    kind: RuntimeKind, url: str, host_id: str
) -> AsyncIterator[DockerRuntime | PodmanRuntime]:
    """The runtime of the engine at `url` (for Podman on a local socket, its service started
    if none answers there), closed on exit."""
    if kind == "docker":
        async with open_docker(url) as docker:
            yield DockerRuntime(docker, host_id)
        return
    socket = Path(url.removeprefix("unix://")) if url.startswith("unix://") else None
    async with open_podman_service(socket), open_docker(url) as docker:
        yield PodmanRuntime(docker, host_id)


__all__ = ["RUNTIME_CHOICES", "open_runtime", "pick_runtime", "podman_socket"]
