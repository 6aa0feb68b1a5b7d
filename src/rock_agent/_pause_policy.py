"""When to pause a sandbox and whether a request must resume it first, as plain rules.

Rules (plain synchronous code; the caller passes every time, as unix time in seconds):
- A sandbox tracked here has a `pause_after` (seconds without a use). A use is a request that
  needs the sandbox's processes (see `_pause.WAKES`); `use_began` and `use_ended` bracket it,
  and while one is in flight the sandbox is not paused. The pause clock runs from the end of
  the last use, or from when tracking began (a restarted agent could see no use before).
- A pause is due at ``last_used + pause_after`` while the sandbox runs, is not paused, and no
  use is in flight. `due(now)` hands each out once; the driver checks it is `still_due` when
  it acts, and reports the outcome with `set_paused` (done), `release` (a use began
  meanwhile) or `failed` (the engine refused: due again `retry` seconds later).
- Whether a sandbox is paused is known for every sandbox, tracked or not (one paused by hand,
  or by another agent, as the engine's events say): `set_paused`, `is_paused`. A report older
  than the latest one recorded is ignored, since the engine's events trail the driver's own
  calls. `stopped` (its processes ended) clears both the paused mark and the pause clock;
  `started` starts the clock again.
"""

from __future__ import annotations

RETRY = 5.0  # seconds before a pause the engine refused is due again


class _Entry:
    __slots__ = ("handed_out", "in_use", "last_used", "pause_after", "retry_at", "running")

    def __init__(self, pause_after: float, now: float) -> None:
        self.pause_after = pause_after
        self.last_used = now
        self.in_use = 0
        self.running = True
        self.handed_out = False
        self.retry_at = 0.0


class PauseTable:
    """The pause policy of the sandboxes this agent enforces, and which sandboxes are paused."""

    def __init__(self, retry: float = RETRY) -> None:
        self.retry = retry
        self._entries: dict[str, _Entry] = {}
        self._paused: dict[str, float] = {}  # paused sandbox -> when that was recorded
        self._changed: dict[str, float] = {}  # sandbox -> time of the latest report

    def __contains__(self, sandbox_id: object) -> bool:
        return sandbox_id in self._entries

    # ------------------------------------------------------------------ what the driver saw

    def track(self, sandbox_id: str, pause_after: float, now: float) -> None:
        """Pause the sandbox after `pause_after` seconds without a use, from `now` on."""
        if sandbox_id not in self._entries:
            self._entries[sandbox_id] = _Entry(pause_after, now)

    def forget(self, sandbox_id: str) -> None:
        """The sandbox is gone."""
        self._entries.pop(sandbox_id, None)
        self._paused.pop(sandbox_id, None)
        self._changed.pop(sandbox_id, None)

    def use_began(self, sandbox_id: str, now: float) -> None:
        """A request that needs the sandbox started."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.in_use += 1
            entry.last_used = max(entry.last_used, now)

    def use_ended(self, sandbox_id: str, now: float) -> None:
        """That request ended: the pause clock runs from now."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.in_use = max(0, entry.in_use - 1)
            entry.last_used = max(entry.last_used, now)

    def set_paused(self, sandbox_id: str, paused: bool, at: float) -> None:
        """The sandbox was paused (or resumed) at `at`; an older report than the last is void."""
        if at < self._changed.get(sandbox_id, 0.0):
            return
        self._changed[sandbox_id] = at
        if paused:
            self._paused[sandbox_id] = at
        else:
            self._paused.pop(sandbox_id, None)
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.handed_out = False
            entry.retry_at = 0.0
            if not paused:
                entry.last_used = max(entry.last_used, at)

    def stopped(self, sandbox_id: str, at: float) -> None:
        """Its processes ended (stopped, or died): not paused, nothing to pause."""
        self.set_paused(sandbox_id, False, at)
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.running = False

    def started(self, sandbox_id: str, at: float) -> None:
        """It runs again: the pause clock starts at `at`."""
        self.set_paused(sandbox_id, False, at)
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.running = True
            entry.last_used = max(entry.last_used, at)

    def release(self, sandbox_id: str) -> None:
        """A pause handed out is not done after all (a use began): it may be due again."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.handed_out = False

    def failed(self, sandbox_id: str, now: float) -> None:
        """The pause handed out could not be done: due again later."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.handed_out = False
            entry.retry_at = now + self.retry

    # ------------------------------------------------------------------ what follows

    def is_paused(self, sandbox_id: str) -> bool:
        """Whether the sandbox is paused, as far as this agent knows."""
        return sandbox_id in self._paused

    def _deadline(self, sandbox_id: str, entry: _Entry) -> float | None:
        if entry.handed_out or entry.in_use or not entry.running or sandbox_id in self._paused:
            return None
        return max(entry.last_used + entry.pause_after, entry.retry_at)

    def due(self, now: float) -> list[str]:
        """The sandboxes to pause now, each handed out once (earliest first)."""
        found: list[tuple[float, str]] = []
        for sandbox_id, entry in self._entries.items():
            at = self._deadline(sandbox_id, entry)
            if at is not None and at <= now:
                entry.handed_out = True
                found.append((at, sandbox_id))
        return [sandbox_id for _, sandbox_id in sorted(found)]

    def still_due(self, sandbox_id: str, now: float) -> bool:
        """Whether a pause handed out is still right (no use began since it was)."""
        entry = self._entries.get(sandbox_id)
        if entry is None or not entry.handed_out or entry.in_use or not entry.running:
            return False
        return entry.last_used + entry.pause_after <= now

    def next_deadline(self) -> float | None:
        """The earliest time a pause may be due (None: none can be)."""
        times = [
            at
            for sandbox_id, entry in self._entries.items()
            if (at := self._deadline(sandbox_id, entry)) is not None
        ]
        return min(times, default=None)


__all__ = ["PauseTable"]
