"""How long a fake create takes: fixed, drawn per sandbox from a distribution, or awaited.

Rules:
- A draw depends only on (seed, sandbox id), never on a shared random stream, so a run is
  reproducible however the event loop orders the creates.
- `FakeStart` records, in anyio's clock, how one fake create spent its time.
- `FakeEngine` is the fake host's engine as the fake agent waits on it: turns at most
  `rate` per second, first come first served, then the start latency. Time is anyio's only,
  so virtual time runs it in milliseconds.
"""

from __future__ import annotations

import abc
import hashlib
import math
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from ._errors import BadRequest


class LatencyDistribution(abc.ABC):
    """Start latencies drawn per sandbox id: the same id (and seed) always draws the same value.

    Drawing by id rather than from a shared random stream keeps a run reproducible however
    the event loop happens to order the creates.
    """

    @abc.abstractmethod
    def sample(self, key: str) -> float:
        """The latency in seconds (>= 0) for the sandbox `key`."""


class LognormalLatency(LatencyDistribution):
    """Lognormal start latencies: `median` seconds times ``exp(sigma * z)``, z standard normal.

    `sigma` sets the tail: 0 is a fixed latency; 0.5 puts p99 at about 3.2x the median and the
    largest of 16,000 draws near 7x. Draws are clipped to [`minimum`, `maximum`]. `seed` picks
    an independent set of draws.
    """

    def __init__(
        self,
        median: float,
        sigma: float,
        *,
        seed: int = 0,
        minimum: float = 0.0,
        maximum: float = math.inf,
    ) -> None:
        if not (math.isfinite(median) and median > 0):
            raise BadRequest(f"median latency must be a positive number of seconds, got {median}")
        if not (math.isfinite(sigma) and sigma >= 0):
            raise BadRequest(f"sigma must be a finite number >= 0, got {sigma}")
        if not (0 <= minimum <= maximum) or math.isnan(maximum):
            raise BadRequest(
                f"latency bounds must satisfy 0 <= minimum <= maximum, got [{minimum}, {maximum}]"
            )
        self.median = median
        self.sigma = sigma
        self.seed = seed
        self.minimum = minimum
        self.maximum = maximum
        self._normal = statistics.NormalDist()

    def sample(self, key: str) -> float:
        """The latency for sandbox `key`: a fixed draw for each (seed, key)."""
        digest = hashlib.blake2b(f"{self.seed}\0{key}".encode(), digest_size=8).digest()
        u = ((int.from_bytes(digest, "big") >> 11) + 0.5) / (1 << 53)  # uniform in (0, 1)
        return self.quantile(u)

    def quantile(self, q: float) -> float:
        """The latency below which a fraction `q` (0 < q < 1) of draws fall, after clipping."""
        value = self.median * math.exp(self.sigma * self._normal.inv_cdf(q))
        return min(max(value, self.minimum), self.maximum)

    def __repr__(self) -> str:
        return (
            f"LognormalLatency(median={self.median:g}, sigma={self.sigma:g}, seed={self.seed},"
            f" minimum={self.minimum:g}, maximum={self.maximum:g})"
        )


StartLatency = float | LatencyDistribution | Callable[[str], Awaitable[None]] | None
"""How long a fake create takes: seconds, a `LatencyDistribution` drawn per sandbox id, or an
async callable given the sandbox id (the create waits for it)."""


@dataclass(frozen=True, slots=True)
class FakeStart:
    """How one fake create spent its time, in seconds of anyio's clock.

    `began` is the clock's time when the create reached the engine (after its checks);
    `engine_wait` is the wait for the engine's turn (see `FakeAgent`'s `engine_rate`) and
    `latency` the start latency after it (fixed, drawn, or as long as the callable took);
    together they are the delay the fake meant to add. `slept` is the time the create really
    spent in both: more than the sum when the event loop is late to wake it.
    """

    began: float
    engine_wait: float
    latency: float
    slept: float


class FakeEngine:
    """The start timing of one fake host: an engine turn (at most `rate` per second, None for
    no cap), then the start `latency` (see `StartLatency`)."""

    def __init__(self, latency: StartLatency, rate: float | None) -> None:
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise BadRequest(
                f"engine_rate must be a positive number of creates per second, got {rate}"
            )
        self.latency = latency
        self.rate = rate
        self._next = -math.inf  # anyio clock time of the engine's next free turn

    async def start(self, sandbox_id: str) -> FakeStart:
        """Wait for the engine's turn, then the start latency; return how the time went."""
        latency = self.latency
        began = anyio.current_time()
        if not latency and self.rate is None:
            return FakeStart(began, engine_wait=0.0, latency=0.0, slept=0.0)  # no checkpoint
        engine_wait = 0.0
        if self.rate is not None:
            turn = max(began, self._next)
            self._next = turn + 1 / self.rate
            engine_wait = turn - began
        if isinstance(latency, LatencyDistribution):
            drawn = latency.sample(sandbox_id)
        elif callable(latency):
            if engine_wait:
                await anyio.sleep_until(began + engine_wait)
            called = anyio.current_time()
            await latency(sandbox_id)
            ended = anyio.current_time()
            return FakeStart(began, engine_wait, latency=ended - called, slept=ended - began)
        else:
            drawn = latency or 0.0
        await anyio.sleep_until(began + engine_wait + drawn)
        return FakeStart(began, engine_wait, latency=drawn, slept=anyio.current_time() - began)


__all__ = ["FakeEngine", "FakeStart", "LatencyDistribution", "LognormalLatency", "StartLatency"]
