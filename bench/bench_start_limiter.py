"""Benchmark: the cluster-wide start limiter's cost (a benchmark, not a test). Needs ray.

A Ray head of its own (``ray start --block``, torn down at the end) and one core over fake
agents (``--hosts`` hosts, each start taking ``--latency`` seconds), in this process. In the
same run, interleaved for ``--rounds`` rounds, ``--creates`` creates at once:

- ``none``: no gate (the baseline);
- ``open``: `open_start_limiter` with a cap that never binds (``max_starts`` = the creates):
  the pure cost of asking the actor for every start;
- ``cap N``: a cap of ``--cap`` starts in flight, which binds;
- ``local N``: the same cap from an in-process gate (`FakeStartGate`), no Ray: what the cap
  alone costs, so that ``cap N`` over ``local N`` is the price of sharing it through Ray.

It prints, per mode, the median over rounds of each round's create time p50 and p99, the
throughput (creates per second, first create to last end), the most starts in flight (from
the fake agents' own start times, and from the limiter's record), and the ratios to the
baseline, with the load average before and after.

Run: ``python bench/bench_start_limiter.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from _stats import median, percentile, print_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the head is ours, on loopback

import ray
from tests.integrations.test_ray_hosts import RayNodes, wait_for_port

from rock_core import SandboxSpec, open_cluster
from rock_core.testing import FakeAgent, FakeAgentConnector, FakeStartGate
from rock_sdk.integrations.ray import open_start_limiter

SPEC = SandboxSpec(image="img:1", cpus=0.01, memory=64 << 20)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def peak(spans: list[tuple[float, float]]) -> int:
    moments = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in moments:
        now += step
        most = max(most, now)
    return most


async def one_round(args: argparse.Namespace, mode: str, name: str) -> dict[str, Any]:
    agents = [
        FakeAgent(host_id=f"h{i}", cpus=64.0, start_latency=args.latency) for i in range(args.hosts)
    ]
    times: list[float] = []

    async def create(cluster: Any, i: int) -> None:
        began = time.perf_counter()
        await cluster.create_sandbox(SPEC, sandbox_id=f"sb-{i}")
        times.append(time.perf_counter() - began)

    async def run(gate: Any) -> float:
        connectors = [FakeAgentConnector(a) for a in agents]
        options = {"start_gate": gate, "queue_timeout": None, "max_starts": args.creates}
        async with open_cluster(connectors, **options) as cluster:
            began = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(args.creates):
                    tg.start_soon(partial(create, cluster, i))
            return time.perf_counter() - began

    limiter_peak: int | str = "-"
    if mode == "none":
        span = await run(None)
    elif mode.startswith("local"):
        local = FakeStartGate(args.cap)
        span = await run(local)
        limiter_peak = local.peak
    else:
        cap = args.creates if mode == "open" else args.cap
        async with open_start_limiter(name, max_starts=cap, lease=30) as gate:
            span = await run(gate)
            limiter_peak = (await gate.statistics())["peak"]
        ray.kill(ray.get_actor(name, namespace="rock"))  # its worker process goes with it
    spans = [(s.began, s.began + s.slept) for a in agents for s in a.starts.values()]
    return {
        "p50": percentile(times, 50) * 1000,
        "p99": percentile(times, 99) * 1000,
        "rate": args.creates / span,
        "peak": peak(spans),
        "limiter_peak": limiter_peak,
    }


async def bench(args: argparse.Namespace, address: str) -> None:
    ray.init(address=address, log_to_driver=False)
    modes = ["none", "open", f"cap {args.cap}", f"local {args.cap}"]
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    before = load()
    for r in range(args.rounds + 1):  # round 0 warms Ray's workers up and is not counted
        for mode in modes if r % 2 else reversed(modes):
            # A fresh limiter per round and mode: its peak is that round's.
            result = await one_round(args, mode, f"bench-{r}-{mode.replace(' ', '')}")
            if r:
                results[mode].append(result)
    after = load()
    base = results["none"]
    rows = []
    for mode in modes:
        rs = results[mode]
        p50 = median([x["p50"] for x in rs])
        rate = median([x["rate"] for x in rs])
        rows.append(
            [
                mode,
                f"{p50:.1f}",
                f"{median([x['p99'] for x in rs]):.1f}",
                f"{rate:.0f}",
                max(x["peak"] for x in rs),
                max((x["limiter_peak"] for x in rs), key=str),
                f"{p50 / median([x['p50'] for x in base]):.2f}",
                f"{rate / median([x['rate'] for x in base]):.2f}",
            ]
        )
    print_table(
        f"start limiter: {args.creates} creates at once over {args.hosts} fake hosts,"
        f" {args.latency * 1000:.0f} ms per start, {args.rounds} rounds (medians);"
        f" load average {before} -> {after}",
        [
            "mode",
            "p50 ms",
            "p99 ms",
            "creates/s",
            "peak (agents)",
            "peak (limiter)",
            "p50 / none",
            "rate / none",
        ],
        rows,
    )
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creates", type=int, default=400)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--cap", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 100 creates")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.creates = 2, 100
    root = Path(tempfile.mkdtemp(prefix="rock-rayb-", dir="/tmp"))
    nodes = RayNodes(root)
    try:
        nodes.head()
        wait_for_port(nodes.port)
        anyio.run(bench, args, nodes.address)
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
