"""Why a sandbox ended, as its agent tells the owner (`SandboxChanged.end`, "end-reasons").

Rules:
- The cause of a change (`_changes`) decides the reason when this agent made the change:
  "idle", "lifetime", "owner_gone" and "lease_expired" are their own reasons, "request" (a
  client's stop or removal) is "user". An auto-delete removes a sandbox that already ended:
  its removal says no reason ("", the core keeps the stop's).
- A stop nobody here made ("engine") is the sandbox's init ending by itself: "oom" when the
  engine says the kernel's OOM killer struck (`ContainerDetail.oom_killed`, read when the stop
  is seen), else "init_exited"; both with the exit code. A removal nobody here made is
  "engine_error" (the engine, or someone using it directly, removed it).
- A start is no end: "".
"""

from __future__ import annotations

import msgspec

from rock_core import RockError
from rock_core.protocol import SandboxChanged

from ._runtime import ContainerRuntime, EngineEvent

_BY_CAUSE = {
    "idle": "idle",
    "lifetime": "lifetime",
    "owner_gone": "owner_gone",
    "lease_expired": "lease_expired",
    "request": "user",
    "auto_delete": "",
}


def end_of(cause: str, action: str, oom_killed: bool) -> str:
    """The end reason of an engine event `action` with `cause` (see the module's rules)."""
    if action == "start":
        return ""
    if cause in _BY_CAUSE:
        return _BY_CAUSE[cause]
    if action == "die":
        return "oom" if oom_killed else "init_exited"
    return "engine_error"


async def with_end(
    runtime: ContainerRuntime, change: SandboxChanged, event: EngineEvent, cause: str
) -> SandboxChanged:
    """`change` with its end reason and exit code; a stop nobody here made is looked at in the
    engine for an OOM kill (a container already gone is taken as not OOM-killed)."""
    oom = False
    if event.action == "die" and cause not in _BY_CAUSE:
        try:
            oom = (await runtime.container(event.sandbox_id)).oom_killed
        except RockError:
            oom = False
    end = end_of(cause, event.action, oom)
    return msgspec.structs.replace(change, end=end, exit_code=event.exit_code)


__all__ = ["end_of", "with_end"]
