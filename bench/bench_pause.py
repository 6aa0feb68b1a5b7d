"""Benchmark: pause and resume (a benchmark, not a test). Needs Docker.

1. Resume plus the first command: a sandbox is paused (`Sandbox.pause()`), then
   ``arun("echo hi", session=s)`` runs, which resumes it first (its agent's resume on use);
   against the same command on a running sandbox, interleaved in one run. Target: resume plus
   the first command at most 50 ms p50.
2. CPU of N paused sandboxes on the host vs N idle running ones: each container's cgroup CPU
   usage (cgroup v1 ``cpuacct.usage`` or v2 ``cpu.stat``) read at the start and the end of a
   window. Target: 0 for the paused ones.

Run: ``python bench/bench_pause.py [--quick]``. Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
from _stats import percentile, print_table

from rock_sdk import Sandbox, SandboxCluster, SandboxConfig, open_cluster

IMAGE = "rock-test/busybox:latest"
CONFIG = SandboxConfig(image=IMAGE, memory="64m")
SMALL = SandboxConfig(image=IMAGE, memory="16m", cpus=0.01)  # 100 fit this host's ledger
TARGETS: list[tuple[str, str, str, bool]] = []


def target(what: str, measured: str, goal: str, met: bool) -> None:
    TARGETS.append((what, measured, goal, met))


# ---------------------------------------------------------------------- 1. resume + command


async def timed_echo(sb: Sandbox) -> float:
    start = time.perf_counter()
    result = await sb.arun("echo hi", session="bench")
    took = time.perf_counter() - start
    assert result.output == "hi\n", result
    return took


async def bench_resume(cluster: SandboxCluster, n: int) -> None:
    paused = await cluster.create_sandbox(CONFIG)
    running = await cluster.create_sandbox(CONFIG)
    try:
        for sb in (paused, running):
            await sb.create_session("bench")
            for _ in range(10):  # warm up
                await timed_echo(sb)
        resumed: list[float] = []
        plain: list[float] = []
        for _ in range(n):
            await paused.pause()
            resumed.append(await timed_echo(paused))
            plain.append(await timed_echo(running))
    finally:
        await paused.delete()
        await running.delete()
    rows = [
        [name, percentile(v, 50) * 1e3, percentile(v, 99) * 1e3]
        for name, v in (("resume + echo", resumed), ("echo on a running sandbox", plain))
    ]
    print_table(f"1. resume + first command, ms ({n} each)", ["case", "p50", "p99"], rows)
    p50 = percentile(resumed, 50) * 1e3
    ratio = p50 / (percentile(plain, 50) * 1e3)
    print(f"ratio of p50s: {ratio:.1f}x; load average {os.getloadavg()[0]:.2f}")
    target("resume + first command p50", f"{p50:.1f} ms", "<= 50 ms", p50 <= 50)


# ---------------------------------------------------------------------- 2. CPU when paused


def cpu_seconds(container_id: str) -> float:
    """A container's CPU time so far, from its cgroup (v1 cpuacct or v2 cpu.stat)."""
    v1 = [
        Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"),
    ]
    for path in v1:
        if path.exists():
            return int(path.read_text()) / 1e9
    v2 = [
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat"),
    ]
    for path in v2:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    raise RuntimeError(f"no cgroup CPU accounting found for container {container_id}")


async def window_cpu(sandboxes: list[Sandbox], seconds: float) -> float:
    ids = []
    for sb in sandboxes:
        info = (await sb.status()).info
        assert info is not None
        ids.append(info.container_id)
    before = sum(cpu_seconds(c) for c in ids)
    await anyio.sleep(seconds)
    return sum(cpu_seconds(c) for c in ids) - before


async def bench_cpu(cluster: SandboxCluster, n: int, seconds: float) -> None:
    sandboxes: list[Sandbox] = []
    try:
        async with anyio.create_task_group() as tg:

            async def make() -> None:
                sandboxes.append(await cluster.create_sandbox(SMALL))

            for _ in range(n):
                tg.start_soon(make)
        idle = await window_cpu(sandboxes, seconds)
        for sb in sandboxes:
            await sb.pause()
        frozen = await window_cpu(sandboxes, seconds)
    finally:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for sb in sandboxes:
                    tg.start_soon(sb.delete)
    rows = [["idle, running", idle * 1e3], ["paused", frozen * 1e3]]
    print_table(
        f"2. CPU of {n} sandboxes over {seconds:g} s (ms of CPU, all together)",
        ["sandboxes", "cpu ms"],
        rows,
    )
    target(f"CPU of {n} paused sandboxes", f"{frozen * 1e3:.3f} ms", "0", frozen == 0)


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
    async with open_cluster(["local"]) as cluster:
        await bench_resume(cluster, args.commands)
        await bench_cpu(cluster, args.sandboxes, args.seconds)
    print(f"\ncontainers after: {leftover_containers()} (before: {before})")
    print_table("targets", ["measure", "result", "target", "met"], TARGETS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer commands and sandboxes")
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--sandboxes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.quick:
        args.commands, args.sandboxes, args.seconds = 50, 20, 3.0
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
