"""`FakeAgent`'s start timing: latency distributions, the engine rate cap, and `starts`."""

from __future__ import annotations

import itertools
import math

import anyio
import pytest

from rock_core import BadRequest, Cluster, SandboxSpec
from rock_core.testing import (
    FakeAgent,
    FakeStart,
    LatencyDistribution,
    LognormalLatency,
    open_fake_cluster,
)
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=0.5, memory=GiB)


# ---------------------------------------------------------------------------- distribution


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile, nearest rank (enough for 20,000 draws)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def test_lognormal_draws_are_fixed_per_seed_and_key() -> None:
    latency = LognormalLatency(0.2, 0.5, seed=7)
    again = LognormalLatency(0.2, 0.5, seed=7)
    other_seed = LognormalLatency(0.2, 0.5, seed=8)
    keys = [f"sb-{i}" for i in range(50)]
    draws = [latency.sample(key) for key in keys]
    assert draws == [again.sample(key) for key in reversed(keys)][::-1]  # order does not matter
    assert draws != [other_seed.sample(key) for key in keys]
    assert len(set(draws)) == len(draws)
    assert all(d > 0 for d in draws)
    assert isinstance(latency, LatencyDistribution)


def test_lognormal_draws_follow_the_distribution() -> None:
    latency = LognormalLatency(0.2, 0.5, seed=1)
    draws = [latency.sample(f"sb-{i}") for i in range(20_000)]
    assert percentile(draws, 50) == pytest.approx(0.2, rel=0.02)
    assert latency.quantile(0.5) == pytest.approx(0.2)
    # p99 of a lognormal is median * exp(sigma * z_0.99), z_0.99 = 2.3263...
    assert latency.quantile(0.99) == pytest.approx(0.2 * math.exp(0.5 * 2.3263479), rel=1e-6)
    assert percentile(draws, 99) == pytest.approx(latency.quantile(0.99), rel=0.05)
    assert max(draws) > 5 * 0.2  # a heavy tail: some draws far above the median


def test_lognormal_with_no_spread_is_fixed_and_bounds_clip() -> None:
    fixed = LognormalLatency(0.3, 0.0)
    assert {fixed.sample(f"k{i}") for i in range(100)} == {0.3}
    clipped = LognormalLatency(0.2, 1.0, minimum=0.1, maximum=0.4)
    draws = [clipped.sample(f"k{i}") for i in range(2000)]
    assert min(draws) == 0.1
    assert max(draws) == 0.4
    assert repr(clipped) == (
        "LognormalLatency(median=0.2, sigma=1, seed=0, minimum=0.1, maximum=0.4)"
    )


def test_bad_latency_settings_are_refused() -> None:
    with pytest.raises(
        BadRequest, match=r"^median latency must be a positive number of seconds, got 0$"
    ):
        LognormalLatency(0, 0.5)
    with pytest.raises(BadRequest, match=r"^sigma must be a finite number >= 0, got -1$"):
        LognormalLatency(0.2, -1)
    with pytest.raises(
        BadRequest,
        match=r"^latency bounds must satisfy 0 <= minimum <= maximum, got \[2, 1\]$",
    ):
        LognormalLatency(0.2, 0.5, minimum=2, maximum=1)
    with pytest.raises(
        BadRequest, match=r"^engine_rate must be a positive number of creates per second, got 0$"
    ):
        FakeAgent(engine_rate=0)


# ---------------------------------------------------------------------------- fake agents


async def create_all(cluster: Cluster, ids: list[str]) -> None:
    """Create a sandbox for each id, all at once."""

    async def create(sandbox_id: str) -> None:
        await cluster.create_sandbox(SPEC, sandbox_id=sandbox_id)

    async with anyio.create_task_group() as tg:
        for sandbox_id in ids:
            tg.start_soon(create, sandbox_id)


async def test_default_creates_take_no_time() -> None:
    async with open_fake_cluster(1) as cluster:
        before = anyio.current_time()
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        start = cluster.agents["fake-0"].starts["sb-1"]
        assert start.began == before == anyio.current_time()  # no (virtual) time passed
        assert start == FakeStart(before, engine_wait=0.0, latency=0.0, slept=0.0)


async def test_each_create_waits_its_drawn_latency() -> None:
    latency = LognormalLatency(0.01, 0.5, seed=3, maximum=0.05)
    async with open_fake_cluster(2, start_latency=latency) as cluster:
        ids = [f"sb-{i}" for i in range(10)]
        await create_all(cluster, ids)
        starts = {k: v for agent in cluster.agents.values() for k, v in agent.starts.items()}
        assert sorted(starts) == ids
        for sandbox_id, start in starts.items():
            assert start.engine_wait == 0.0
            assert start.latency == latency.sample(sandbox_id)
            assert start.slept == pytest.approx(start.latency)
        # A retried create of an existing sandbox answers at once and keeps the first record.
        agent = cluster.agents[cluster.record("sb-0").host or ""]
        first = agent.starts["sb-0"]
        await cluster.create_sandbox(SPEC, sandbox_id="sb-0")
        assert agent.starts["sb-0"] is first


async def test_fixed_and_callable_latencies_are_recorded() -> None:
    waited: list[str] = []

    async def latency(sandbox_id: str) -> None:
        waited.append(sandbox_id)
        await anyio.sleep(0.02)

    async with open_fake_cluster(1, start_latency=0.02) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-fixed")
        start = cluster.agents["fake-0"].starts["sb-fixed"]
        assert (start.engine_wait, start.latency) == (0.0, 0.02)
        assert start.slept == pytest.approx(0.02)
    async with open_fake_cluster(1, start_latency=latency) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-called")
        start = cluster.agents["fake-0"].starts["sb-called"]
        assert waited == ["sb-called"]
        assert start.engine_wait == 0.0
        assert start.latency == pytest.approx(0.02)  # what the callable waited
        assert start.slept == start.latency


async def test_the_engine_rate_spaces_out_concurrent_creates() -> None:
    rate = 20.0  # one turn every 50 ms
    async with open_fake_cluster(1, max_starts=8, engine_rate=rate) as cluster:
        agent = cluster.agents["fake-0"]
        began = anyio.current_time()
        await create_all(cluster, [f"sb-{i}" for i in range(6)])
        took = anyio.current_time() - began
        starts = sorted(agent.starts.values(), key=lambda s: s.began + s.engine_wait)
        assert len(starts) == 6
        assert starts[0].engine_wait == 0.0  # the first create finds the engine idle
        # The engine's turns are 1/rate apart, though the creates all arrived at once.
        turns = [s.began + s.engine_wait for s in starts]
        for earlier, later in itertools.pairwise(turns):
            assert later - earlier == pytest.approx(1 / rate), turns
        assert took == pytest.approx(5 / rate)
        for start in agent.starts.values():
            assert start.latency == 0.0
            assert start.slept == pytest.approx(start.engine_wait)
        # Once the engine is idle again, a lone create gets its turn at once.
        await anyio.sleep(1 / rate + 0.01)
        await cluster.create_sandbox(SPEC, sandbox_id="sb-alone")
        assert agent.starts["sb-alone"].engine_wait == 0.0


async def test_engine_wait_comes_before_the_latency() -> None:
    async with open_fake_cluster(1, start_latency=0.03, engine_rate=10.0) as cluster:
        agent = cluster.agents["fake-0"]
        await create_all(cluster, [f"sb-{i}" for i in range(3)])
        starts = sorted(agent.starts.values(), key=lambda s: s.began + s.engine_wait)
        turns = [s.began + s.engine_wait for s in starts]
        # Turns keep the engine's spacing; each latency runs after its create's turn.
        for earlier, later in itertools.pairwise(turns):
            assert later - earlier == pytest.approx(0.1), turns
        for start in starts:
            assert start.latency == 0.03
            assert start.slept == pytest.approx(start.engine_wait + start.latency)
