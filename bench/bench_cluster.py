"""Benchmark: clusters over SSH (a benchmark, not a test). Needs root, Docker and sshd.

1. Session round trip, ``arun("echo hi", session=s)``, over the local pipe vs over SSH (the
   loopback sshd of ``scripts/setup-host.sh``, stream-local forwarding to an on-demand agent)
   vs a unix socket straight to that same agent, interleaved in one run. Target: SSH p50 at
   most 1.5 ms.
2. 100 sandboxes across 3 hosts made from network namespaces (each with its own address, sshd
   and agent; all share this machine's one Docker engine), created at once: placement per host
   and time until all run, vs the same 100 on one of those hosts.

Run: ``python bench/bench_cluster.py [--quick]``. Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import anyio
from _stats import median, percentile, print_table

from rock_sdk import SandboxCluster, SandboxConfig, SshOptions, open_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster._netns import open_netns_hosts

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
IMAGE = "rock-test/busybox:latest"
TARGETS: list[tuple[str, str, str, bool]] = []


def target(what: str, measured: str, goal: str, met: bool) -> None:
    TARGETS.append((what, measured, goal, met))


# ---------------------------------------------------------------------- 1. round trip


async def round_trips(cluster: SandboxCluster, n: int) -> list[float]:
    sb = await cluster.create_sandbox(SandboxConfig(image=IMAGE, memory="64m"))
    await sb.create_session("bench")
    for _ in range(20):  # warm up
        await sb.arun("echo hi", session="bench")
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await sb.arun("echo hi", session="bench")
        times.append(time.perf_counter() - start)
    await sb.delete()
    return times


async def bench_round_trip(n: int, rounds: int) -> None:
    socket = Path(tempfile.mkdtemp(prefix="rock-bench-")) / "agent.sock"
    ssh = SshOptions(known_hosts=str(SSH_DIR / "known_hosts"), client_keys=[str(SSH_DIR / "id")])
    sides = {
        "local pipe": (["local"], None),
        "ssh, stream-local forward": ([f"ssh://root@127.0.0.1:2222?socket={socket}"], ssh),
        "unix socket, same agent": ([f"unix://{socket}"], None),
    }
    samples: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for _ in range(rounds):
            for name, (hosts, options) in sides.items():
                async with open_cluster(hosts, ssh=options) as cluster:
                    samples[name] += await round_trips(cluster, n // rounds)
    finally:
        await anyio.run_process(["pkill", "-TERM", "-f", f"serve --socket {socket}"], check=False)
    rows = []
    for name, times in samples.items():
        ms = [t * 1000 for t in times]
        rows.append([name, median(ms), percentile(ms, 90), percentile(ms, 99)])
    print_table(
        f"1. session round trip, {n} commands per side, ms", ["side", "p50", "p90", "p99"], rows
    )
    pipe, ssh_p50 = rows[0][1], rows[1][1]
    assert isinstance(pipe, float) and isinstance(ssh_p50, float)
    print(f"   ssh / pipe p50 = {ssh_p50 / pipe:.2f}x; ssh adds {ssh_p50 - pipe:.3f} ms")
    target("round trip over ssh, p50", f"{ssh_p50:.3f} ms", "<= 1.5 ms", ssh_p50 <= 1.5)


# ---------------------------------------------------------------------- 2. 100 over 3 hosts


async def start_many(
    hosts: Sequence[str], ssh: SshOptions, count: int
) -> tuple[float, Counter[str]]:
    # Small enough that 100 fit on one host (each namespace host reports this machine's cpus).
    config = SandboxConfig(image=IMAGE, memory="32m", cpus=0.01)
    async with open_cluster(hosts, ssh=ssh) as cluster:
        placed: Counter[str] = Counter()
        start = time.perf_counter()

        async def one() -> None:
            sb = await cluster.create_sandbox(config)
            placed[(await sb.status()).host or "?"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        elapsed = time.perf_counter() - start
        # Leaving the cluster deletes them all (not timed).
    return elapsed, placed


async def bench_spread(count: int) -> None:
    with open_netns_hosts(3) as netns:
        ssh = SshOptions(known_hosts=str(netns.known_hosts), client_keys=[str(netns.client_key)])
        hosts = [h.url for h in netns]
        # Start each host's agent before timing (the first connect runs `rock-agent ensure`).
        async with open_cluster(hosts, ssh=ssh):
            pass
        three, placed = await start_many(hosts, ssh, count)
        one, _ = await start_many(hosts[:1], ssh, count)
        names = {h.host_id: h.alias for h in netns}
        spread = ", ".join(f"{names.get(k, k)}: {v}" for k, v in sorted(placed.items()))
        rows = [
            ["3 hosts (spread)", three, count / three, spread],
            ["1 host", one, count / one, f"{names[netns[0].host_id]}: {count}"],
        ]
        print_table(
            f"2. {count} sandboxes created at once, until all run",
            ["cluster", "seconds", "sandboxes/s", "placement"],
            rows,
        )
        print(f"   3 hosts / 1 host time = {three / one:.2f}x (the hosts share one engine here)")
        # Spread places by free resources among hosts with a free start slot, so when starts
        # finish unevenly the queue drains a little unevenly too.
        mean = count / 3
        even = len(placed) == 3 and all(abs(v - mean) <= 0.15 * mean + 1 for v in placed.values())
        target("placement over 3 hosts", spread, "each within 15% of the mean", even)


def leftover_containers() -> int:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=rock.managed=1"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(out.stdout.split())


async def run(args: argparse.Namespace) -> None:
    before = leftover_containers()
    print(f"containers before: {before}")
    await bench_round_trip(args.commands, rounds=args.rounds)
    await bench_spread(args.sandboxes)
    print(f"\ncontainers after: {leftover_containers()} (before: {before})")
    print_table("targets", ["measure", "result", "target", "met"], TARGETS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer commands and sandboxes")
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sandboxes", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.commands, args.rounds, args.sandboxes = 600, 2, 30
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
