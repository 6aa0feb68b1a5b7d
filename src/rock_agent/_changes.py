"""What a sandbox's change means to its owner: the cause of an engine event, and its removals.

Rules:
- Plain decisions, with `now` passed in: no clock, no engine and no I/O here; the deadline
  keeper (`_expiry`) feeds them the engine's events and acts on what they say.
- A change this agent makes is noted before it is made (`Causes.note`, naming the event that
  will carry it); the engine's event then takes that cause. A stop made on the way to a
  removal ("die" before "destroy") carries the removal's cause too. An event nobody noted,
  or one noted over `CAUSE_TTL` seconds ago (its event never came), is the "engine"'s.
- Removals are remembered (the latest `REMEMBER` per owner), so a core whose link was down
  when its sandbox went learns why.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from rock_core.protocol import SandboxChanged

from ._runtime import EngineEvent

CAUSE_TTL = 60.0  # a cause noted for a change whose event never came is dropped after this
REMEMBER = 1000


class _Noted(NamedTuple):
    cause: str
    reason: str
    event: str  # the engine event that completes the change
    at: float


class Causes:
    """Why this agent is changing each sandbox, until the engine's event says it happened."""

    def __init__(self) -> None:
        self._noted: dict[str, _Noted] = {}

    def note(self, sandbox_id: str, cause: str, reason: str, event: str, now: float) -> None:
        """This agent is about to change a sandbox: the engine's `event` will carry `cause`."""
        self._noted[sandbox_id] = _Noted(cause, reason, event, now)

    def drop(self, sandbox_id: str) -> None:
        """The change was not made (or the sandbox is gone): no event will carry it."""
        self._noted.pop(sandbox_id, None)

    def take(self, sandbox_id: str, action: str, now: float) -> tuple[str, str]:
        """(cause, reason) of an engine event `action` of the sandbox; ("engine", "") if this
        agent did not make it. The note is used up by the event it named."""
        noted = self._noted.get(sandbox_id)
        if noted is None or now - noted.at > CAUSE_TTL:
            self._noted.pop(sandbox_id, None)
            return "engine", ""
        cause, reason, final = noted.cause, noted.reason, noted.event
        if action == final:
            del self._noted[sandbox_id]
        elif not (final == "destroy" and action == "die"):
            return "engine", ""
        if final == "destroy" and action == "die" and cause in ("idle", "lifetime"):
            reason = f"{reason}; deleting it (on_expire='delete')"
        return cause, reason


def change_of(event: EngineEvent, cause: str, reason: str) -> SandboxChanged:
    """The `SandboxChanged` an owner hears for an engine event, with its cause and reason (or
    the default reason for a change nobody here made)."""
    if event.action == "start":
        state, reason = "running", reason or "started by another program"
    elif event.action == "die":
        code = "?" if event.exit_code is None else event.exit_code
        state = "stopped"
        reason = reason or f"the container stopped (exit code {code}), not at its owner's request"
    else:
        state, reason = "deleted", reason or "removed by another program"
    return SandboxChanged(
        sandbox_id=event.sandbox_id, state=state, cause=cause, reason=reason, at=event.time
    )


class Removals:
    """The latest removals of each owner's sandboxes, oldest first."""

    def __init__(self) -> None:
        self._by_owner: dict[str, OrderedDict[str, SandboxChanged]] = {}

    def add(self, owner: str, change: SandboxChanged) -> None:
        """Remember a removal (the oldest beyond `REMEMBER` is forgotten)."""
        removed = self._by_owner.setdefault(owner, OrderedDict())
        removed[change.sandbox_id] = change
        while len(removed) > REMEMBER:
            removed.popitem(last=False)

    def of(self, owner: str) -> list[SandboxChanged]:
        """The owner's sandboxes removed lately, oldest first."""
        return list(self._by_owner.get(owner, {}).values())

    def forget_owner(self, owner: str) -> None:
        """The owner is gone from this agent."""
        self._by_owner.pop(owner, None)


__all__ = ["CAUSE_TTL", "REMEMBER", "Causes", "Removals", "change_of"]
