"""What an agent announces it can do, in its `Welcome` (a core checks before it asks).

Rules:
- One name per family of requests or behaviour; a core refuses (or works around) what its
  agent does not announce, so an older agent is never sent what it would take for garbage.
- Announced by what the host can do, on top of these: ``disk-limits`` (`_server.accept`) and
  the shared admission (`_admit`).
"""

from __future__ import annotations

from rock_core.protocol import NETWORK_POLICY

CAPABILITIES = [
    "sessions",
    "interactive",
    "execute",
    "files",
    "archives",
    "owner-reaping",
    "leases",
    "images",
    "commit",
    "build",
    "stats",
    "ports",
    "host-ports",
    "timeouts",
    "events",
    "owners",
    "logs",
    "exec-stream",  # ExecuteStreamed (rock_core.protocol.EXEC_STREAM)
    "metrics",
    "top",
    "checkpoint",  # rock_core.protocol checkpoint requests (`_checkpoints`)
    NETWORK_POLICY,  # a NetworkPolicy in SandboxSpec.network (docs/network.md)
    "pause",
    "terminal",
    "end-reasons",  # SandboxChanged says why a sandbox ended (`_end_reasons`)
]

__all__ = ["CAPABILITIES"]
