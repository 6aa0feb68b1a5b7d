"""The user's Podman service, started by the agent when none answers on its socket.

Rules:
- Rootless Podman has no daemon: its Docker-compatible API is ``podman system service``, which
  a site may run as a systemd user unit (``podman.socket``). An agent that finds nothing
  answering on the socket starts ``podman system service --time=0 unix://SOCKET`` itself, as
  its own child, and stops it when the agent ends. Containers are not its children (Podman's
  ``conmon`` holds each), so they outlive it and the next agent adopts them.
- A service that answers already is used as it is and never stopped by the agent.
- A service started here is waited for until its socket answers (it takes about a second;
  at most `START_TIMEOUT`, or until it exits), so the runtime's first call finds it; one that
  does not come up is left to the runtime, which reports the engine unavailable.
- Without a ``podman`` program nothing is started; the runtime then reports the engine
  unavailable, naming the socket.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process

log = logging.getLogger("rock_agent")

START_TIMEOUT = 30.0  # seconds a started service may take to answer on its socket
START_POLL = 0.05  # seconds between looks at the socket meanwhile
STOP_TIMEOUT = 10.0  # seconds a started service gets to exit on SIGTERM before SIGKILL


def answers(path: Path) -> bool:
    """True if something accepts connections on the unix socket `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def service_command(path: Path) -> list[str] | None:
    """The command that serves Podman's API on `path`; None if Podman is not installed."""
    podman = shutil.which("podman")
    if podman is None:
        return None
    return [podman, "system", "service", "--time=0", f"unix://{path}"]


@asynccontextmanager
async def open_podman_service(path: Path | None) -> AsyncIterator[None]:
    """Make sure a Podman service will answer on `path` (None: not a local socket; nothing to
    do), starting one for the block if none does."""
    command = None if path is None or answers(path) else service_command(path)
    if path is None or command is None:
        yield
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.info("starting the Podman service on %s", path)
    process = await anyio.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None
    )
    try:
        for _ in range(round(START_TIMEOUT / START_POLL)):
            if process.returncode is not None or answers(path):
                break
            await anyio.sleep(START_POLL)
        if process.returncode is not None:
            log.warning("the Podman service exited at once (%s)", process.returncode)
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)


async def _stop(process: Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with anyio.move_on_after(STOP_TIMEOUT):
        await process.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


__all__ = ["answers", "open_podman_service", "service_command"]
