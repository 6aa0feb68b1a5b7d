"""A start gate: permits for creates, shared with other programs (``start_gate=`` of a cluster).

A core counts only its own starts. Several trainer processes, each embedding a core, can ask a
gate they share (a Ray actor: `rock_sdk.integrations.ray.open_start_limiter`) before each start,
so that the starts in flight across all of them stay under one cap or rate.

Rules:
- A create takes one permit after its placement and before its request goes to the agent, and
  gives it back when that request ends: made, refused (`HostFull`, then a new permit for the
  next try), failed or cancelled. A permit is named by a fresh token per try, so a gate never
  confuses two tries of one sandbox.
- The wait for a permit counts against the create's one `queue_timeout`: when nothing of it is
  left, the create raises `QueueTimedOut` naming the gate, and its placement is given back.
- A cancelled caller never keeps a permit: the release runs shielded (bounded by
  `RELEASE_TIMEOUT`), also when the acquire did not finish, because the gate may have granted it
  in the moment the caller left. A gate's `release` of a token it does not hold is a no-op.
- A gate raises our errors (`RockError`); any other exception from it is wrapped in
  `TransportError` naming the gate. A failed release is logged, never raised over the create's
  own outcome: a gate leases its permits, so one it did not hear back about expires there.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from typing import Protocol

import anyio

from ._errors import BadRequest, QueueTimedOut, RockError, TransportError

log = logging.getLogger("rock_core")

RELEASE_TIMEOUT = 10.0  # seconds a release may take before it is left to the gate's lease


class StartGate(Protocol):
    """Permits for starts, shared by every program that uses the same gate."""

    async def acquire(self, token: str) -> None:
        """Return once the permit `token` is granted; cancellable at any point."""
        ...

    async def release(self, token: str) -> None:
        """Give `token` back, granted or still waited for (a no-op for one not held)."""
        ...


def check_start_gate(gate: object) -> StartGate | None:
    """`gate` if it is None or a `StartGate`; `BadRequest` otherwise."""
    if gate is None:
        return None
    methods = [getattr(gate, name, None) for name in ("acquire", "release")]
    if not isinstance(gate, type) and all(inspect.iscoroutinefunction(m) for m in methods):
        return gate  # type: ignore[return-value]
    raise BadRequest(
        f"start_gate must be None or an object with async acquire(token) and release(token),"
        f" got {gate!r}"
    )


class StartPermit:
    """One create try's permit from `gate` (None: no gate, every call returns at once)."""

    def __init__(self, gate: StartGate | None, sandbox_id: str) -> None:
        self.gate = gate
        self.sandbox_id = sandbox_id
        self.token = f"{sandbox_id}/{secrets.token_hex(6)}"
        self.asked = False

    async def take(self, timeout: float | None, queue_timeout: float | None) -> None:
        """Wait for the permit at most `timeout` seconds (None: no bound); `queue_timeout` is
        the create's whole bound, for the error."""
        if self.gate is None:
            return
        self.asked = True
        granted = False
        with anyio.move_on_after(max(0.0, timeout) if timeout is not None else None):
            try:
                await self.gate.acquire(self.token)
            except RockError:
                raise
            except Exception as exc:
                raise TransportError(f"start gate {self.gate!r} failed: {exc!r}") from exc
            granted = True
        if not granted:
            raise QueueTimedOut(
                f"sandbox {self.sandbox_id} got no start permit from {self.gate!r} within its"
                f" queue_timeout ({queue_timeout} s): other programs hold the gate's permits."
                " (queue_timeout=None waits without a limit.)",
                sandbox_id=self.sandbox_id,
                queue_timeout=queue_timeout,
            )

    async def give_back(self) -> None:
        """Release the permit if it was asked for (shielded, bounded, never raises)."""
        if self.gate is None or not self.asked:
            return
        self.asked = False
        with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT) as scope:
            try:
                await self.gate.release(self.token)
            except Exception as exc:
                log.warning(
                    "start gate %r did not take back permit %s: %s", self.gate, self.token, exc
                )
        if scope.cancelled_caught:
            log.warning(
                "start gate %r did not answer the release of %s within %g s: left to its lease",
                self.gate,
                self.token,
                RELEASE_TIMEOUT,
            )


__all__ = ["RELEASE_TIMEOUT", "StartGate", "StartPermit", "check_start_gate"]
