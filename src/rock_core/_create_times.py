"""How long creates take as their caller sees them, by launch type: a plain histogram.

Rules:
- Launch types follow kubernetes-sigs/agent-sandbox: "warm" is a sandbox a warm pool handed
  out from its ready members, "cold" one started for the caller (a direct create, or a pool
  acquire that missed and started one).
- A pool member's own create (labelled ``rock.pool``, made ahead of demand by a refill) is no
  caller's wait and is not counted here: the acquire that hands it out is.
- Plain counts with `now` differences passed in, no clock and no Prometheus: the core stays
  free of I/O, and `rock_core.metrics.ClusterCollector` turns a snapshot into a histogram.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from ._pool_options import POOL_LABEL
from ._values import SandboxSpec

#: Upper bounds (seconds) of the create-latency buckets, shared by the core and the agents.
CREATE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAUNCH_TYPES = ("warm", "cold")


class _Times:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(CREATE_BUCKETS) + 1)  # the last one: above every bound
        self.total = 0.0


class CreateTimes:
    """Create latencies by launch type (see the module's rules)."""

    def __init__(self) -> None:
        self._times = {launch: _Times() for launch in LAUNCH_TYPES}

    def observe(self, launch: str, seconds: float) -> None:
        """Count one create of `launch` ("warm" or "cold") that took `seconds`."""
        times = self._times[launch]
        times.counts[bisect.bisect_left(CREATE_BUCKETS, seconds)] += 1
        times.total += seconds

    def created(self, spec: SandboxSpec, seconds: float) -> None:
        """Count a direct create of `spec` as cold, unless it fills a pool."""
        if POOL_LABEL not in spec.labels:
            self.observe("cold", seconds)

    def snapshot(self) -> Mapping[str, tuple[list[tuple[str, float]], float]]:
        """Per launch type: cumulative (upper bound, count) buckets ending with "+Inf", and
        the sum of the seconds."""
        result: dict[str, tuple[list[tuple[str, float]], float]] = {}
        for launch, times in self._times.items():
            buckets: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip(
                (*map(repr, CREATE_BUCKETS), "+Inf"), times.counts, strict=True
            ):
                running += count
                buckets.append((bound, float(running)))
            result[launch] = (buckets, times.total)
        return result


__all__ = ["CREATE_BUCKETS", "LAUNCH_TYPES", "CreateTimes"]
