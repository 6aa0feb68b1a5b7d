"""Prometheus metrics of a cluster's scheduler and warm pools, for the embedding program.

The core never publishes anything itself: the program registers a `ClusterCollector` in a
registry of its own and serves that registry as it likes (docs/metrics.md)::

    registry = prometheus_client.CollectorRegistry()
    registry.register(rock_core.metrics.ClusterCollector(cluster))

Rules:
- Everything is read at scrape time from `Cluster.statistics()` and `Cluster.create_times`:
  the collector holds no state and costs nothing between scrapes.
- `prometheus_client` is imported here only, so ``import rock_core`` never needs it (it is a
  declared dependency all the same).
- Names and labels follow kubernetes-sigs/agent-sandbox where they overlap (`launch_type`
  "warm"/"cold", `warmpool_name`); units are seconds, as Prometheus asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._create_times import CREATE_BUCKETS, LAUNCH_TYPES, CreateTimes
from ._statistics import ClusterStatistics


class MeasuredCluster(Protocol):
    """What a `ClusterCollector` reads (a `rock_core.Cluster`)."""

    create_times: CreateTimes

    def statistics(self) -> ClusterStatistics:
        """The cluster's snapshot."""
        ...


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class ClusterCollector(Collector):
    """The scheduler's queue and placements, every open pool, and create latency as callers
    saw it (see docs/metrics.md for each metric)."""

    def __init__(self, cluster: MeasuredCluster) -> None:
        self.cluster = cluster

    def describe(self) -> list[Metric]:
        """Nothing up front: the pools' label values are only known at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics now."""
        stats = self.cluster.statistics()
        yield _gauge("rock_cluster_queue_depth", "Creates waiting for room.", stats.queue_depth)
        yield _gauge("rock_cluster_sandboxes_placed", "Sandboxes placed on hosts.", stats.placed)
        yield _gauge(
            "rock_cluster_starts_in_flight",
            "Creates sent to agents, not yet answered.",
            stats.starting,
        )
        yield CounterMetricFamily(
            "rock_cluster_placements", "Placements the scheduler made.", value=stats.placements
        )
        yield CounterMetricFamily(
            "rock_cluster_rejections",
            "Creates refused for lack of room (a queue timeout or no host that could ever fit).",
            value=stats.rejections,
        )
        yield from _pools(stats)
        latency = HistogramMetricFamily(
            "rock_cluster_creation_latency_seconds",
            "Seconds from asking for a sandbox to holding it, as the caller saw it.",
            labels=["launch_type"],
        )
        snapshot = self.cluster.create_times.snapshot()
        for launch in LAUNCH_TYPES:
            buckets, total = snapshot[launch]
            latency.add_metric([launch], buckets, total)
        yield latency


def _pools(stats: ClusterStatistics) -> Iterator[Metric]:
    label = ["warmpool_name"]
    gauges = {
        "size": ("rock_pool_size", "Members the pool holds: ready plus being made."),
        "ready": ("rock_pool_ready", "Members ready to be handed out."),
        "target": ("rock_pool_target", "How many members the pool refills to now."),
        "handed_out": ("rock_pool_handed_out", "Members handed out and not given back."),
    }
    counters = {
        "hits": ("rock_pool_hits", "Acquires served by a ready member (warm)."),
        "misses": ("rock_pool_misses", "Acquires that started a sandbox (cold)."),
        "refills": ("rock_pool_refills", "Members made in the background."),
        "failures": ("rock_pool_failures", "Refills and resets that gave no ready member."),
    }
    families: list[GaugeMetricFamily | CounterMetricFamily] = []
    for field, (name, doc) in gauges.items():
        gauge = GaugeMetricFamily(name, doc, labels=label)
        for pool in stats.pools:
            gauge.add_metric([pool.name], getattr(pool, field))
        families.append(gauge)
    for field, (name, doc) in counters.items():
        counter = CounterMetricFamily(name, doc, labels=label)
        for pool in stats.pools:
            counter.add_metric([pool.name], getattr(pool, field))
        families.append(counter)
    yield from families


__all__ = ["CREATE_BUCKETS", "ClusterCollector", "MeasuredCluster"]
