"""Sandbox deadlines: idle timeout, hard lifetime, expiry policy and auto-delete, as plain rules.

Rules (plain synchronous code; the caller passes every time, as unix time in seconds):
- A tracked sandbox has `Timeouts`: `idle` (seconds without a use), `lifetime` (seconds from its
  latest start), `on_expire` ("stop" keeps the container and its files; "delete" removes it)
  and `auto_delete` (seconds after any stop). None: no limit.
- A use is a request naming the sandbox. `use_began` and `use_ended` bracket it: while a use is
  in flight the idle timeout cannot run out (a long command is not idleness), and it runs again
  from the end of the last one. `touch` is a use with no duration (keepalive).
- While it runs, expiry is due at the earlier of ``last_used + idle`` and ``started_at +
  lifetime``; the action is the policy, the cause the limit that ran out. While it is stopped
  (any stop: asked, expired, or seen from the engine), a delete is due at ``stopped_at +
  auto_delete``.
- `due(now)` hands out each due action once and holds the sandbox until the driver reports the
  outcome: `stopped` / `started` / `forget` as the engine reports them, or `failed` (the engine
  refused), after which the action is due again `retry` seconds later.
- `started` and `stopped` take the engine's time of the change. One older than the latest change
  recorded is ignored: an engine's event stream may replay it after the state was read.
- `change` applies at once: a deadline moved into the past is due at the next `due`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rock_core.protocol import SandboxDeadlines, SandboxSpec, as_limit

RETRY = 5.0  # seconds before an action the engine refused is due again


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A sandbox's limits, in seconds (None: no limit), and what expiry does."""

    idle: float | None = None
    lifetime: float | None = None
    on_expire: str = "stop"
    auto_delete: float | None = None

    @classmethod
    def from_spec(cls, spec: SandboxSpec) -> Timeouts:
        """The limits a spec asks for (the schema has checked them)."""
        return cls(
            idle=as_limit(spec.idle_timeout),
            lifetime=as_limit(spec.lifetime),
            on_expire=spec.on_expire,
            auto_delete=as_limit(spec.auto_delete_after),
        )

    @property
    def limited(self) -> bool:
        """True when any deadline can run out."""
        return self.idle is not None or self.lifetime is not None or self.auto_delete is not None


@dataclass(frozen=True, slots=True)
class Due:
    """An action a deadline asks for now: ``stop`` or ``delete`` a sandbox, and why."""

    sandbox_id: str
    action: str  # "stop" | "delete"
    cause: str  # "idle" | "lifetime" | "auto_delete"
    reason: str


class _Entry:
    __slots__ = (
        "changed_at",
        "handed_out",
        "in_use",
        "last_used",
        "owner",
        "retry_at",
        "running",
        "started_at",
        "stop_cause",
        "stopped_at",
        "timeouts",
    )

    def __init__(self, owner: str, timeouts: Timeouts) -> None:
        self.owner = owner
        self.timeouts = timeouts
        self.running = True
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.last_used = 0.0
        self.in_use = 0
        self.changed_at = 0.0  # engine time of the latest start or stop recorded
        self.handed_out = False  # a due action is with the driver
        self.retry_at = 0.0
        self.stop_cause = ""


def project(
    timeouts: Timeouts,
    *,
    running: bool,
    started_at: float | None,
    stopped_at: float | None,
    last_used: float | None,
    in_use: bool = False,
    stop_cause: str = "",
) -> SandboxDeadlines:
    """The deadlines of a sandbox in this situation (also for one this table does not track)."""
    t = timeouts
    idle_at = lifetime_at = delete_at = None
    if running:
        if t.idle is not None and last_used is not None:
            idle_at = max(last_used, started_at or 0.0) + t.idle
        if t.lifetime is not None and started_at is not None:
            lifetime_at = started_at + t.lifetime
    elif t.auto_delete is not None and stopped_at is not None:
        delete_at = stopped_at + t.auto_delete
    return SandboxDeadlines(
        idle_timeout=t.idle,
        lifetime=t.lifetime,
        on_expire=t.on_expire,
        auto_delete_after=t.auto_delete,
        started_at=started_at,
        stopped_at=None if running else stopped_at,
        last_used=last_used,
        in_use=in_use,
        idle_at=idle_at,
        lifetime_at=lifetime_at,
        delete_at=delete_at,
        stop_cause="" if running else stop_cause,
    )


class DeadlineTable:
    """The deadlines of every sandbox this agent enforces."""

    def __init__(self, retry: float = RETRY) -> None:
        self.retry = retry
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sandbox_id: object) -> bool:
        return sandbox_id in self._entries

    # ------------------------------------------------------------------ what the driver saw

    def track(
        self,
        sandbox_id: str,
        owner: str,
        timeouts: Timeouts,
        *,
        now: float,
        running: bool,
        started_at: float,
        stopped_at: float | None = None,
        stop_cause: str = "",
    ) -> None:
        """Enforce a sandbox's deadlines from now on (created, or adopted after a restart).

        Its idle clock starts at `now`: while no agent ran, nothing could use it.
        """
        entry = _Entry(owner, timeouts)
        entry.running = running
        entry.started_at = started_at
        entry.stopped_at = started_at if stopped_at is None else stopped_at
        entry.changed_at = started_at if running else entry.stopped_at
        entry.last_used = now
        entry.stop_cause = stop_cause
        self._entries[sandbox_id] = entry

    def forget(self, sandbox_id: str) -> None:
        """The sandbox is gone (or no longer this agent's to enforce)."""
        self._entries.pop(sandbox_id, None)

    def owner(self, sandbox_id: str) -> str | None:
        """The owner of a tracked sandbox."""
        entry = self._entries.get(sandbox_id)
        return None if entry is None else entry.owner

    def timeouts(self, sandbox_id: str) -> Timeouts | None:
        """A tracked sandbox's current limits."""
        entry = self._entries.get(sandbox_id)
        return None if entry is None else entry.timeouts

    def use_began(self, sandbox_id: str, now: float) -> None:
        """A request naming the sandbox started."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.in_use += 1
            entry.last_used = max(entry.last_used, now)

    def use_ended(self, sandbox_id: str, now: float) -> None:
        """A request naming the sandbox ended: the idle timeout runs from now."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.in_use = max(0, entry.in_use - 1)
            entry.last_used = max(entry.last_used, now)

    def touch(self, sandbox_id: str, now: float) -> None:
        """A use with no duration (keepalive)."""
        self.use_began(sandbox_id, now)
        self.use_ended(sandbox_id, now)

    def started(self, sandbox_id: str, at: float) -> None:
        """The container started at `at` (engine time): the lifetime and idle clocks restart."""
        entry = self._entries.get(sandbox_id)
        if entry is None or at < entry.changed_at or (entry.running and at == entry.changed_at):
            return
        entry.running = True
        entry.started_at = entry.changed_at = at
        entry.last_used = max(entry.last_used, at)
        entry.handed_out = False
        entry.retry_at = 0.0
        entry.stop_cause = ""

    def stopped(self, sandbox_id: str, at: float, cause: str = "") -> None:
        """The container stopped at `at` (engine time), for `cause` if known."""
        entry = self._entries.get(sandbox_id)
        if entry is None or at < entry.changed_at or not entry.running:
            if entry is not None and not entry.running and cause and not entry.stop_cause:
                entry.stop_cause = cause
            return
        entry.running = False
        entry.stopped_at = entry.changed_at = at
        entry.handed_out = False
        entry.retry_at = 0.0
        entry.stop_cause = cause

    def change(
        self,
        sandbox_id: str,
        *,
        idle: float | None = None,
        lifetime: float | None = None,
        on_expire: str = "",
        auto_delete: float | None = None,
    ) -> Timeouts:
        """Change a tracked sandbox's limits: None (or "") leaves one, infinity removes it.

        The values come validated (`SetTimeouts`'s schema); returns the limits now in force.
        """
        entry = self._entries[sandbox_id]
        new = entry.timeouts
        if idle is not None:
            new = replace(new, idle=as_limit(idle))
        if lifetime is not None:
            new = replace(new, lifetime=as_limit(lifetime))
        if on_expire:
            new = replace(new, on_expire=on_expire)
        if auto_delete is not None:
            new = replace(new, auto_delete=as_limit(auto_delete))
        entry.timeouts = new
        return new

    def failed(self, sandbox_id: str, now: float) -> None:
        """The driver could not carry out the action handed out: it is due again later."""
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.handed_out = False
            entry.retry_at = now + self.retry

    # ------------------------------------------------------------------ what is due

    def _next(self, entry: _Entry) -> tuple[float, str] | None:
        """(time, cause) of the entry's earliest deadline, if it has one."""
        t = entry.timeouts
        candidates: list[tuple[float, str]] = []
        if entry.running:
            if t.idle is not None and entry.in_use == 0:
                candidates.append((entry.last_used + t.idle, "idle"))
            if t.lifetime is not None:
                candidates.append((entry.started_at + t.lifetime, "lifetime"))
        elif t.auto_delete is not None:
            candidates.append((entry.stopped_at + t.auto_delete, "auto_delete"))
        if not candidates:
            return None
        at, cause = min(candidates)
        return max(at, entry.retry_at), cause

    def due(self, now: float) -> list[Due]:
        """The actions due at `now`, each handed out once (earliest deadline first)."""
        found: list[tuple[float, Due]] = []
        for sandbox_id, entry in self._entries.items():
            if entry.handed_out:
                continue
            deadline = self._next(entry)
            if deadline is None or deadline[0] > now:
                continue
            at, cause = deadline
            entry.handed_out = True
            found.append((at, Due(sandbox_id, *_action(entry, cause, now))))
        return [due for _, due in sorted(found, key=lambda pair: pair[0])]

    def next_deadline(self) -> float | None:
        """The earliest time anything may be due (None: nothing can be)."""
        times = [
            deadline[0]
            for entry in self._entries.values()
            if not entry.handed_out and (deadline := self._next(entry)) is not None
        ]
        return min(times, default=None)

    def view(self, sandbox_id: str) -> SandboxDeadlines | None:
        """A tracked sandbox's deadlines as the protocol reports them."""
        entry = self._entries.get(sandbox_id)
        if entry is None:
            return None
        return project(
            entry.timeouts,
            running=entry.running,
            started_at=entry.started_at,
            stopped_at=entry.stopped_at,
            last_used=entry.last_used,
            in_use=entry.in_use > 0,
            stop_cause=entry.stop_cause,
        )


def _action(entry: _Entry, cause: str, now: float) -> tuple[str, str, str]:
    """(action, cause, reason) for the deadline `cause` that ran out."""
    t = entry.timeouts
    if cause == "auto_delete":
        return "delete", cause, f"auto-delete {_seconds(t.auto_delete)} after it stopped"
    if cause == "idle":
        why = f"idle for {_seconds(now - entry.last_used)} (idle timeout {_seconds(t.idle)})"
    else:
        why = f"ran for {_seconds(now - entry.started_at)} (lifetime {_seconds(t.lifetime)})"
    return t.on_expire, cause, f"expired: {why}"


def _seconds(value: float | None) -> str:
    return "no limit" if value is None else f"{value:.3g} s"


__all__ = ["DeadlineTable", "Due", "Timeouts", "project"]
