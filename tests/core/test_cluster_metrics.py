"""The core's metrics against fake agents, in virtual time: create latency by launch type as
callers see it (a pool's refills are nobody's wait), and `ClusterCollector` reading the
scheduler and the pools into a program's own registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rock_core import BadRequest, NotFound, SandboxSpec, open_pool, read_metrics
from rock_core._create_times import CREATE_BUCKETS, CreateTimes
from rock_core.metrics import ClusterCollector
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import SPEC, GiB

pytestmark = pytest.mark.anyio


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_create_times_are_cumulative_buckets_per_launch_type() -> None:
    times = CreateTimes()
    times.observe("warm", 0.0005)
    times.observe("cold", 0.3)
    times.observe("cold", 1e6)  # above every bound: only +Inf holds it
    times.created(SpecWithPool, 0.3)  # a pool's refill: not counted
    warm, cold = times.snapshot()["warm"], times.snapshot()["cold"]
    assert warm[0][0] == (repr(CREATE_BUCKETS[0]), 1.0) and warm[1] == 0.0005
    assert dict(cold[0])["0.25"] == 0 and dict(cold[0])["0.5"] == 1
    assert cold[0][-1] == ("+Inf", 2.0) and cold[1] == 0.3 + 1e6
    with pytest.raises(KeyError):
        times.observe("lukewarm", 1.0)


SpecWithPool = SandboxSpec(image="img:1", labels={"rock.pool": "p"})


async def test_the_collector_shows_the_pools_hits_and_warm_hand_outs() -> None:
    async with open_fake_cluster(1, cpus=8, memory=32 * GiB, start_latency=0.5) as cluster:
        registry = CollectorRegistry()
        registry.register(ClusterCollector(cluster))
        await cluster.create_sandbox(SPEC)  # direct: cold, 0.5 s of virtual time
        async with open_pool(cluster, SPEC, min_size=1, max_size=1, name="p") as pool:
            await pool.wait_ready()
            await pool.acquire()  # a hit: warm, at once
            await pool.acquire()  # a miss: cold, a start's time
            found = samples(registry)
        pool_label = (("warmpool_name", "p"),)
        assert found[("rock_pool_hits_total", pool_label)] == 1
        assert found[("rock_pool_misses_total", pool_label)] == 1
        assert found[("rock_pool_handed_out", pool_label)] == 2
        latency = "rock_cluster_creation_latency_seconds"
        warm, cold = (("launch_type", "warm"),), (("launch_type", "cold"),)
        assert found[(f"{latency}_count", warm)] == 1
        assert found[(f"{latency}_sum", warm)] == 0.0
        assert found[(f"{latency}_count", cold)] == 2  # the direct create and the miss
        assert found[(f"{latency}_bucket", (("launch_type", "cold"), ("le", "0.25")))] == 0
        assert found[(f"{latency}_sum", cold)] >= 1.0
        assert found[("rock_cluster_queue_depth", ())] == 0
        assert found[("rock_cluster_placements_total", ())] >= 3
        # Once the pool is closed its series are gone; the cluster's stay.
        after = samples(registry)
        assert ("rock_pool_hits_total", pool_label) not in after
        assert after[(f"{latency}_count", warm)] == 1


async def test_an_agent_without_metrics_is_told_apart_before_anything_is_sent() -> None:
    async with open_fake_cluster(2, cpus=8, memory=32 * GiB) as cluster:
        with pytest.raises(BadRequest) as refused:
            await read_metrics(cluster)
        message = str(refused.value)
        assert sorted(message.split("; ")) == [
            f"host fake-{n}: the agent of host fake-{n} (version fake) cannot read metrics: "
            "upgrade rock-agent there"
            for n in (0, 1)
        ]
        with pytest.raises(NotFound, match=r"^no host 'nowhere' \(hosts: fake-0, fake-1\)$"):
            await read_metrics(cluster, ["nowhere"])
