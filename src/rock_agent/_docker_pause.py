"""Pausing a Docker sandbox: the engine's freezer (``docker pause`` / ``docker unpause``).

Rules:
- One engine call on the common path: the container is named, not inspected first, so a
  resume before a command costs one round trip.
- Idempotent as the runtime seam says: the engine's refusal of "already paused" (pause) is no
  error, nor is "not paused" (resume) when the container runs (engines answer 409 or 500). A
  container that does not run is a `BadRequest` naming its state
  (`_start_failure.not_running`); an unknown one `SandboxNotFound` (`engine_call`).
"""

from __future__ import annotations

from typing import Any

from aiodocker.exceptions import DockerError

from ._docker_json import container_detail
from ._engine import engine_call, engine_errors
from ._start_failure import not_running


async def set_paused(
    docker: Any, name: str, sandbox_id: str, *, paused: bool, seconds: float
) -> None:
    """Pause (or, with ``paused=False``, resume) the container `name` of `sandbox_id`."""
    what = f"{'pausing' if paused else 'resuming'} sandbox {sandbox_id}"
    container = docker.containers.container(name)
    with engine_call(what, seconds):
        try:
            await (container.pause() if paused else container.unpause())
            return
        except DockerError as exc:
            if exc.status not in (409, 500):
                raise
            refusal = exc
    # The engine refused (409 or 500, by version): the container may already be so, or not
    # run; which, its record says.
    with engine_call(f"inspecting sandbox {sandbox_id}", seconds):
        detail = container_detail((await docker.containers.get(name))._container)
    if not detail.running:
        raise not_running(
            sandbox_id, detail.status, "start it first" if paused else "nothing to resume"
        )
    if (detail.status == "paused") != paused:
        with engine_errors(what):
            raise refusal


__all__ = ["set_paused"]
