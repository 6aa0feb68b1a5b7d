"""The decisions of the cluster-wide start limiter: who holds a permit, who waits, who expired.

Plain synchronous code with `now` passed in (no clocks, no I/O, no ray): the Ray actor
(`_ray_limiter`) calls it, and its tests call it directly.

Rules:
- A permit is a token named by its client (a trainer process). Grants go round-robin across
  the clients that wait, first come, first served within each (a trainer that queued a
  thousand starts does not hold back the others for all of them), while both limits allow:
  fewer than `max_starts` tokens held (None: no cap), and a whole token in the bucket that
  `rate` fills (starts per second, up to `burst`; None: no rate).
- Every permit is leased: a client that has not called for `lease` seconds is gone, and its
  permits and places in line are dropped (`expired` counts the permits). A live client renews
  all of its tokens with one call, naming the ones it holds and the ones it waits for; a token
  of that client that it no longer names (released by a call that arrived before its acquire)
  is dropped.
- A restarted limiter knows nothing: a renew naming a held token it does not know adopts it
  (over the cap if need be, never refused: those starts are under way), so nothing is counted
  twice. Until `settle` (the first renews after a restart) it grants nothing, so the cap holds
  across the restart.
- Asking again for a token already held or waited for changes nothing (calls are retried).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from rock_core import BadRequest

MAX_PERMITS = 1_000_000
MAX_RATE = 1_000_000.0
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    """What a limiter enforces (checked by `limiter_config`)."""

    max_starts: int | None
    rate: float | None
    burst: int
    lease: float


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise BadRequest(f"{what} must be finite, got {value!r}")
    return float(value)


def _whole(value: object, what: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{what} must be a whole number, got {value!r}")
    if not 1 <= value <= most:
        raise BadRequest(f"{what} must be between 1 and {most}, got {value!r}")
    return value


def limiter_config(
    max_starts: object = None, rate: object = None, burst: object = None, lease: object = 30.0
) -> LimiterConfig:
    """The checked config (`BadRequest` naming the bad value); at least one limit is needed."""
    if max_starts is None and rate is None:
        raise BadRequest("a start limiter needs max_starts (a cap) or rate (starts/s), or both")
    cap = None if max_starts is None else _whole(max_starts, "max_starts", MAX_PERMITS)
    per_second = None
    if rate is not None:
        per_second = _number(rate, "rate")
        if not 0 < per_second <= MAX_RATE:
            raise BadRequest(f"rate must be above 0 and at most {MAX_RATE:g}/s, got {rate!r}")
    if burst is None:
        whole_burst = max(1, math.floor(per_second)) if per_second else 1
    else:
        if per_second is None:
            raise BadRequest("burst applies to a rate: give rate too, or leave burst out")
        whole_burst = _whole(burst, "burst", MAX_PERMITS)
    seconds = _number(lease, "lease")
    if not 1.0 <= seconds <= 3600.0:
        raise BadRequest(f"lease must be between 1 and 3600 seconds, got {lease!r}")
    return LimiterConfig(cap, per_second, whole_burst, seconds)


def check_name(name: object) -> str:
    """A limiter's actor name: 1-100 of [A-Za-z0-9._-]; `BadRequest` otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(f"a limiter's name must be 1-100 of [A-Za-z0-9._-], got {name!r}")
    return name


class LimiterBook:
    """The limiter's state; see the module's rules."""

    def __init__(self, config: LimiterConfig, now: float, *, settle: float = 0.0) -> None:
        self.config = config
        self.held: dict[str, str] = {}  # token -> client
        self.line: dict[str, str] = {}  # waiting token -> client
        self.queues: dict[str, OrderedDict[str, None]] = {}  # client -> its tokens, oldest first
        self.turn: deque[str] = deque()  # the clients that wait, the next to be served first
        self.seen: dict[str, float] = {}  # client -> when it last called
        self.bucket = float(config.burst)
        self.filled_at = now
        self.quiet_until = now + settle
        self.peak = 0
        self.grants = 0
        self.expired = 0
        self.adopted = 0

    def ask(self, client: str, token: str, now: float) -> None:
        """`client` wants a permit for `token` (again: no change)."""
        self.seen[client] = now
        if token not in self.held and token not in self.line:
            self.line[token] = client
            if client not in self.queues:
                self.queues[client] = OrderedDict()
                self.turn.append(client)
            self.queues[client][token] = None

    def release(self, client: str, token: str, now: float) -> None:
        """`client` gives `token` back, held or waited for (any other token: no change)."""
        self.seen[client] = now
        if self.held.get(token) == client:
            del self.held[token]
        if self.line.get(token) == client:
            self._unqueue(token)

    def renew(self, client: str, holds: list[str], waits: list[str], now: float) -> None:
        """`client` is alive and names every token it holds and waits for (see the rules)."""
        self.seen[client] = now
        named = set(holds) | set(waits)
        for token in [t for t, c in self.held.items() if c == client and t not in named]:
            del self.held[token]
        for token in [t for t, c in self.line.items() if c == client and t not in named]:
            self._unqueue(token)
        for token in holds:
            if token not in self.held:
                if token in self.line:
                    self._unqueue(token)
                self.held[token] = client
                self.adopted += 1
        self.peak = max(self.peak, len(self.held))

    def pump(self, now: float) -> float | None:
        """Drop gone clients, grant what the limits allow; return the seconds until time alone
        may change something (a token refills, a lease ends, the settling ends), or None."""
        lease = self.config.lease
        for client in [c for c, at in self.seen.items() if now - at > lease]:
            del self.seen[client]
            for token in [t for t, c in self.held.items() if c == client]:
                del self.held[token]
                self.expired += 1
            for token in list(self.queues.get(client, ())):
                self._unqueue(token)
        rate = self.config.rate
        if rate is not None:
            self.bucket = min(self.config.burst, self.bucket + (now - self.filled_at) * rate)
        self.filled_at = now
        cap = self.config.max_starts
        if now >= self.quiet_until:
            while self.line and (cap is None or len(self.held) < cap):
                if rate is not None:
                    if self.bucket < 1.0:
                        break
                    self.bucket -= 1.0
                client = self.turn[0]
                queue = self.queues[client]
                token, _ = queue.popitem(last=False)
                del self.line[token]
                self.turn.rotate(-1)  # this client goes to the back of the turn
                if not queue:
                    del self.queues[client]
                    self.turn.remove(client)
                self.held[token] = client
                self.grants += 1
            self.peak = max(self.peak, len(self.held))
        waits: list[float] = []
        if self.line and now < self.quiet_until:
            waits.append(self.quiet_until - now)
        elif self.line and rate is not None and self.bucket < 1.0:
            waits.append((1.0 - self.bucket) / rate)
        if self.seen:
            waits.append(max(0.0, min(self.seen.values()) + lease - now) + 1e-3)
        return min(waits) if waits else None

    def _unqueue(self, token: str) -> None:
        client = self.line.pop(token)
        queue = self.queues[client]
        del queue[token]
        if not queue:
            del self.queues[client]
            self.turn.remove(client)

    def holds(self, token: str) -> bool:
        """Whether `token` holds a permit."""
        return token in self.held

    def statistics(self) -> dict[str, float | int | None]:
        """The counts, as `RayStartLimiter.statistics` returns them."""
        return {
            "held": len(self.held),
            "waiting": len(self.line),
            "clients": len(self.seen),
            "peak": self.peak,
            "grants": self.grants,
            "expired": self.expired,
            "adopted": self.adopted,
            "max_starts": self.config.max_starts,
            "rate": self.config.rate,
            "burst": self.config.burst,
            "lease": self.config.lease,
        }


__all__ = ["LimiterBook", "LimiterConfig", "check_name", "limiter_config"]
