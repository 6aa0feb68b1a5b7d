"""`SandboxStatus`: a snapshot of one sandbox, as `Sandbox.status()` returns it."""

from __future__ import annotations

from rock_core import SandboxRecord, SandboxState, Transition
from rock_core.protocol import SandboxDeadlines, SandboxInfo


class SandboxStatus:
    """A snapshot of a sandbox: its state, host, container, deadlines and full state history.

    `deadlines` holds its timeouts and when each runs out (unix times; see `SandboxDeadlines`),
    as its agent keeps them; None once it is deleted or when its agent predates timeouts.
    `history` holds every step with its reason; a step that ended the sandbox has its `end`
    (an `EndReason`) and its init's `exit_code` if known. `end` is that step while the sandbox
    is ended (stopped, deleted, failed, lost), else None.
    """

    def __init__(self, record: SandboxRecord, info: SandboxInfo | None) -> None:
        self.sandbox_id = record.sandbox_id
        self.state: SandboxState = record.state
        self.host = record.host
        self.history: list[Transition] = record.history
        self.end: Transition | None = record.end
        self.info = info
        self.sessions: list[str] = list(info.sessions) if info else []
        self.image = record.spec.image
        self.network = record.spec.network  # False, True or its `NetworkPolicy`
        self.deadlines: SandboxDeadlines | None = info.deadlines if info else None
        # Frozen now (`Sandbox.pause`, or `pause_after`); its state stays running.
        self.paused = info is not None and info.state == "paused"

    @property
    def is_running(self) -> bool:
        """True while the sandbox runs."""
        return self.state is SandboxState.RUNNING

    def __repr__(self) -> str:
        state = "paused" if self.paused else self.state.value
        return f"<SandboxStatus {self.sandbox_id} {state} on {self.host}>"


__all__ = ["SandboxStatus"]
