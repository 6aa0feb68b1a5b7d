"""Benchmark: a cluster whose hosts come from Ray discovery, with fake agents (not a test).

`HostSource.from_ray` reads a fake Ray node list (the dicts ``ray.nodes()`` returns) instead
of a Ray cluster, and each node's address leads to a `rock_core.testing.FakeAgent` in this
process, as in `bench_scale` (whose burst, measures and tables this reuses). The script reports:

1. the control-plane figures of `bench_scale` for one burst (16,000 creates over 200 hosts
   by default) on hosts the source discovered;
2. the time from a node joining Ray's list to the cluster taking placements on it (target
   under 2 s), for several joins while the burst's sandboxes still run; and the time from a
   node leaving the list to its host being drained.

Run: ``python bench/bench_host_sources.py [--quick]`` (no Docker, no Ray needed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import anyio
from _stats import median, print_table
from bench_scale import (
    HOST_CPUS,
    HOST_MEMORY,
    IMAGE,
    SPEC,
    burst_on,
    fake_starts,
    report_burst,
    report_rock,
)

from rock_core import HostSource
from rock_core._cluster import running
from rock_core._options import make_scheduler
from rock_core.testing import FakeAgent, FakeAgentConnector, FakeCluster, LognormalLatency

JOIN_TARGET = 2.0  # seconds from a node joining Ray's list to its first placement
POLL = 0.002  # seconds between two looks at the cluster while timing a join


class FakeRay:
    """A Ray node list of fake nodes, each with a fake agent at its address."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.table: list[dict[str, Any]] = []
        self.agents: dict[str, FakeAgent] = {}
        self.latency = LognormalLatency(
            args.median, args.sigma, seed=args.seed, maximum=args.max_latency
        )

    def join(self, index: int) -> str:
        """Add node `index` to the list (and its agent); return its address."""
        address = f"10.{index // 250}.{index % 250}.1"
        self.agents[address] = FakeAgent(
            host_id=address,
            cpus=HOST_CPUS,
            memory=HOST_MEMORY,
            images=[IMAGE],
            start_latency=self.latency,
            engine_rate=self.args.engine_rate,
        )
        self.table.append(
            {
                "NodeID": f"{index:056x}",
                "Alive": True,
                "NodeManagerAddress": address,
                "Resources": {"CPU": HOST_CPUS, "memory": float(HOST_MEMORY)},
                "Labels": {},
            }
        )
        return address

    def leave(self, address: str) -> None:
        """Mark the node at `address` dead, as Ray does when a raylet goes."""
        for node in self.table:
            if node["NodeManagerAddress"] == address:
                node["Alive"] = False

    def nodes(self) -> list[dict[str, Any]]:
        return [dict(node) for node in self.table]

    def host(self, address: str) -> FakeAgentConnector:
        return FakeAgentConnector(self.agents[address], name=address)


async def time_joins(cluster: FakeCluster, ray: FakeRay, joins: int) -> list[list[float]]:
    """For each join: seconds to connected, and to its first sandbox running there."""
    rows: list[list[float]] = []
    for number in range(joins):
        address = ray.join(ray.args.hosts + number)
        joined = time.perf_counter()
        while address not in cluster.hosts:  # noqa: ASYNC110 (timing a poll by the source)
            await anyio.sleep(POLL)
        taking = time.perf_counter() - joined
        cluster.agents[address] = ray.agents[address]
        record = await cluster.create_sandbox(SPEC)  # spread: the empty host is chosen
        assert record.host == address, (record.host, address)
        rows.append([taking, time.perf_counter() - joined])
    return rows


async def time_leave(cluster: FakeCluster, ray: FakeRay) -> float:
    """Seconds from a node leaving the list to its host being drained."""
    address = next(iter(ray.agents))
    ray.leave(address)
    left = time.perf_counter()
    while not cluster.hosts[address].drained:  # noqa: ASYNC110 (timing a poll by the source)
        await anyio.sleep(POLL)
    return time.perf_counter() - left


async def run(args: argparse.Namespace) -> int:
    """The burst, then the joins and the leave; print the tables."""
    print(f"python {platform.python_version()}, backend {args.backend}, pid {os.getpid()}")
    print(f"load average before: {os.getloadavg()}")
    ray = FakeRay(args)
    for index in range(args.hosts):
        ray.join(index)
    source = HostSource.from_ray(refresh=args.refresh, host=ray.host, nodes=ray.nodes)
    cluster = FakeCluster(
        "bench-owner", make_scheduler(args.policy, args.n + args.joins, args.max_starts)
    )
    cluster.agents = dict(ray.agents)
    print(
        f"{args.hosts} fake Ray nodes (cpus {HOST_CPUS:g}, memory {HOST_MEMORY >> 30} GiB each),"
        f" node list read every {args.refresh:g} s; start latency {ray.latency!r};"
        f" engine rate {args.engine_rate or 'none'}",
        flush=True,
    )
    began = time.perf_counter()
    async with running(cluster, source):
        opened = time.perf_counter() - began
        print(f"first snapshot connected: {len(cluster.hosts)} hosts in {opened:.2f} s")
        result = await burst_on(cluster, args, args.n, fake_starts(cluster))
        joins = await time_joins(cluster, ray, args.joins)
        leave = await time_leave(cluster, ray)
        teardown = time.perf_counter()
    result.teardown = time.perf_counter() - teardown
    report_burst(result, args)
    print_table(
        "end-to-end create latency beside ROCK's published figures, s",
        ["concurrent", "hosts", "ours p50", "ours p99", "ROCK p50", "ROCK p99", "p50 x", "p99 x"],
        report_rock([result]),
    )
    print_table(
        f"joins while {args.n:,} sandboxes run (node list read every {args.refresh:g} s), s",
        ["join", "to placements", "to its first sandbox running"],
        [[number + 1, *row] for number, row in enumerate(joins)],
    )
    worst = max(row[0] for row in joins)
    print_table(
        "summary",
        ["figure", "measured", "target", "result"],
        [
            [
                "join -> takes placements, worst",
                f"{worst:.2f} s",
                f"< {JOIN_TARGET:g} s",
                "PASS" if worst < JOIN_TARGET else "MISS",
            ],
            ["join -> takes placements, median", f"{median([r[0] for r in joins]):.2f} s", "", ""],
            ["leave -> drained", f"{leave:.2f} s", "", ""],
        ],
    )
    print(f"load average after: {os.getloadavg()}")
    return 0


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 creates over 50 hosts")
    parser.add_argument("--hosts", type=int, help="fake Ray nodes (default 200; quick 50)")
    parser.add_argument("-n", type=int, help="concurrent creates (default 16000; quick 1000)")
    parser.add_argument("--refresh", type=float, default=1.0, help="node list period, s")
    parser.add_argument("--joins", type=int, default=5, help="nodes that join after the burst")
    parser.add_argument("--median", type=float, default=0.2, help="median start latency, s")
    parser.add_argument("--sigma", type=float, default=0.5, help="lognormal sigma (tail)")
    parser.add_argument("--max-latency", type=float, default=5.0, help="latency clip, s")
    parser.add_argument("--seed", type=int, default=1, help="seed of the latency draws")
    parser.add_argument(
        "--engine-rate", type=float, default=7.0, help="creates/s per host engine; 0: no cap"
    )
    parser.add_argument("--max-starts", type=int, default=8, help="starts in flight per host")
    parser.add_argument("--policy", choices=["spread", "binpack"], default="spread")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--no-gc", action="store_true", help="turn the garbage collector off during the burst"
    )
    args = parser.parse_args()
    args.hosts = args.hosts or (50 if args.quick else 200)
    args.n = args.n or (1000 if args.quick else 16000)
    args.engine_rate = args.engine_rate or None
    args.in_process = True  # the fake Ray nodes' agents run in this process (bench_scale's report)
    return anyio.run(run, args, backend=args.backend)


if __name__ == "__main__":
    sys.exit(main())
