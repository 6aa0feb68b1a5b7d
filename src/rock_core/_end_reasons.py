"""Why a sandbox ended, from what its agent pushed (`SandboxChanged`): an `EndReason`.

Rules:
- An agent with the capability "end-reasons" says the reason (`SandboxChanged.end`) and its
  init's exit code; a value this core does not know is `engine_error` (a newer agent's).
- From an older agent, the cause decides: "idle" and "lifetime" are theirs, "request" (another
  client's stop or removal) is `user`, a stop nobody here made ("engine") is `init_exited`
  and a removal nobody here made is `engine_error`.
- "auto_delete" removes a sandbox that already ended: the removal keeps that end's reason.
- A start is no end.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ._protocol import SandboxChanged
from ._states import EndReason, Transition

END_REASONS = "end-reasons"  # the capability of an agent that says why a sandbox ended

_BY_CAUSE: Mapping[str, EndReason] = MappingProxyType(
    {
        "idle": EndReason.IDLE,
        "lifetime": EndReason.LIFETIME,
        "request": EndReason.USER,
        "owner_gone": EndReason.OWNER_GONE,
        "lease_expired": EndReason.LEASE_EXPIRED,
    }
)


def change_end(
    change: SandboxChanged, before: Transition | None
) -> tuple[EndReason | None, int | None]:
    """The end reason and exit code of a pushed change; `before` is the sandbox's end so far
    (`SandboxRecord.end`), which an auto-delete keeps. (None, None) for a start."""
    if change.state == "running":
        return None, None
    if change.end:
        try:
            return EndReason(change.end), change.exit_code
        except ValueError:
            return EndReason.ENGINE_ERROR, change.exit_code
    if change.cause == "auto_delete" and before is not None:
        return before.end, before.exit_code
    known = _BY_CAUSE.get(change.cause)
    if known is not None:
        return known, change.exit_code
    if change.state == "stopped":
        return EndReason.INIT_EXITED, change.exit_code
    return EndReason.ENGINE_ERROR, change.exit_code


__all__ = ["END_REASONS", "change_end"]
