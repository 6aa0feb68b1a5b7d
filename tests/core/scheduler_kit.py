"""Helpers for the scheduler's tests: small demands and hosts of one size."""

from __future__ import annotations

from rock_core._scheduler import Demand, HostStatistics, Resources, Scheduler

GiB = 1 << 30


def small(image: str = "") -> Demand:
    return Demand(1, GiB, image)


def cluster(*hosts: str, cpus: float = 4, policy: str = "spread", **kw: int) -> Scheduler:
    sched = Scheduler(policy=policy, **kw)  # type: ignore[arg-type]
    for host in hosts:
        assert sched.add_host(host, Resources(cpus, 16 * GiB)) == []
    return sched


def host_stats(sched: Scheduler, host_id: str) -> HostStatistics:
    (stats,) = [h for h in sched.statistics().hosts if h.host_id == host_id]
    return stats


__all__ = ["GiB", "cluster", "host_stats", "small"]
