"""Pausing a sandbox from the SDK: `Sandbox.pause()` / `resume()` and `rock pause|resume`.

Rules:
- One call to the sandbox's agent (`PauseSandbox` / `ResumeSandbox`), after checking that it
  announced the "pause" capability (an older agent gets no request it cannot decode).
- The core's record keeps its state: a paused sandbox is running as far as its lifecycle
  goes (any use resumes it), and `SandboxStatus.paused` says it is frozen now. See
  docs/pause.md.
"""

from __future__ import annotations

from typing import Protocol

from rock_core import AgentConnection, Cluster
from rock_core.protocol import PauseSandbox, ResumeSandbox, SandboxInfo, SandboxReply


async def set_paused(connection: AgentConnection, sandbox_id: str, paused: bool) -> SandboxInfo:
    """Pause (or resume) a sandbox through the agent that holds it; the sandbox afterwards."""
    connection.require("pause", "pause or resume a sandbox")
    request = (
        PauseSandbox(sandbox_id=sandbox_id) if paused else ResumeSandbox(sandbox_id=sandbox_id)
    )
    reply = await connection.call(request, SandboxReply)
    return reply.sandbox


class _Placed(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    @property
    def cluster(self) -> Cluster: ...


class Pausable:
    """The pause and resume of a `Sandbox`."""

    async def pause(self: _Placed) -> None:
        """Freeze every process of the sandbox where it stands (the engine's freezer): it
        keeps its memory and uses no CPU. Any later use resumes it (a command, a file, a
        session, a port...); pausing a paused sandbox does nothing; one that is not running is
        a `BadRequest`. Its lifetime and idle clocks go on: see docs/pause.md."""
        await set_paused(self.cluster.connection(self.sandbox_id), self.sandbox_id, True)

    async def resume(self: _Placed) -> None:
        """Thaw a paused sandbox now (any use would); resuming a running one does nothing."""
        await set_paused(self.cluster.connection(self.sandbox_id), self.sandbox_id, False)


__all__ = ["Pausable", "set_paused"]
