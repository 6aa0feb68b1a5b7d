"""Messages of pausing a sandbox: freezing its processes where they stand, and thawing them.

Rules:
- Built on the base messages of `_messages`; both requests are answered with a
  `SandboxReply` carrying the sandbox as it is afterwards (state "paused" or "running").
- Idempotent: pausing a paused sandbox and resuming a running one change nothing. Pausing (or
  resuming) a sandbox that does not run (created, stopped) is a `BadRequest` naming its state.
- An agent that serves them announces the capability "pause"; a client checks it before
  sending (`AgentConnection.require`). Such an agent also resumes a paused sandbox on the
  next request that uses it, and pauses one idle for its spec's `pause_after`.
- A new request kind here is added to the unions in `_protocol` too.
"""

from __future__ import annotations

from ._messages import Request
from ._schema import SandboxId

CAPABILITY = "pause"


class PauseSandbox(Request, tag="pause"):
    """Freeze every process of a running sandbox (the engine's freezer); memory is kept."""

    sandbox_id: SandboxId


class ResumeSandbox(Request, tag="resume"):
    """Thaw a paused sandbox: its processes go on where they stood."""

    sandbox_id: SandboxId


__all__ = ["CAPABILITY", "PauseSandbox", "ResumeSandbox"]
