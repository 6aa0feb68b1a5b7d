"""A `FakeAgent`'s sandboxes ending on their own, as a real agent reports them.

Rules:
- `end_sandbox` ends one running sandbox of a fake agent with an `EndReason`, and pushes the
  `SandboxChanged` a real agent with the capability "end-reasons" pushes: its cause (what a
  real agent's deadline keeper names it), the reason, the init's exit code and the time.
- The reasons of a removal (the owner gone, its lease expired) remove it (state "deleted");
  every other reason stops it (state "stopped": its container is kept, exited).
- The fake keeps no deadlines and no OOM counters: tests say what happened, this reports it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._errors import BadRequest, SandboxNotFound
from ._protocol import SandboxChanged
from ._states import EndReason

if TYPE_CHECKING:
    from ._fake_agent import FakeAgent

_CAUSES = {
    EndReason.USER: "request",
    EndReason.IDLE: "idle",
    EndReason.LIFETIME: "lifetime",
    EndReason.OWNER_GONE: "owner_gone",
    EndReason.LEASE_EXPIRED: "lease_expired",
}
_REMOVALS = frozenset({EndReason.OWNER_GONE, EndReason.LEASE_EXPIRED})


async def end_sandbox(
    agent: FakeAgent,
    sandbox_id: str,
    end: EndReason,
    *,
    exit_code: int | None = None,
    reason: str = "",
) -> SandboxChanged:
    """End a running sandbox of `agent` for `end` and tell its owner (see the module's rules).

    `SandboxNotFound` for an unknown id; `BadRequest` for a host loss (no agent reports its own
    loss: disconnect it) or a sandbox that does not run."""
    if end is EndReason.HOST_LOST:
        raise BadRequest("an agent never reports host_lost: the core decides it (disconnect)")
    sandbox = agent.sandboxes.get(sandbox_id)
    if sandbox is None:
        raise SandboxNotFound(
            f"no sandbox {sandbox_id!r} on host {agent.host_id}", sandbox_id=sandbox_id
        )
    if sandbox.info.state not in ("running", "paused"):
        raise BadRequest(f"sandbox {sandbox_id} is {sandbox.info.state}: only a running one ends")
    if end in _REMOVALS:
        del agent.sandboxes[sandbox_id]
        state = "deleted"
    else:
        sandbox.info.state, sandbox.info.exit_code = "exited", exit_code
        state = "stopped"
    change = SandboxChanged(
        sandbox_id=sandbox_id,
        state=state,
        cause=_CAUSES.get(end, "engine"),
        reason=reason or f"ended: {end.value}",
        at=time.time(),
        end=end.value,
        exit_code=exit_code,
    )
    await agent.push(sandbox, change)
    return change


__all__ = ["end_sandbox"]
