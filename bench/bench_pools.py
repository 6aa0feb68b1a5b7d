"""Benchmark: warm pools and bulk create beside cold starts and raw Docker (not a test).

Every comparison runs both sides in this one process, interleaved, and prints ratios:

1. Acquire vs cold start: a hit from a full warm pool (`pool.acquire()`, then the first
   command's round trip, timed apart) vs a cold `Sandbox(...).start()` (then its first
   command, which opens the shell) vs raw aiodocker create+start of the same container.
2. 100 acquires in a row with refill running: back to back (each sandbox released at once),
   and paced (one acquire every 250 ms, each sandbox held for 1 s): hit rate and latency.
3. Bulk create of 50: `create_many` (default concurrency: the host's 8 start slots) vs raw
   create+start of 50 with 8 and with 50 in flight.

Run: ``python bench/bench_pools.py [--quick] [--only acquire|row|bulk]`` (needs Docker and
the local image ``python:3.11``; nothing is pulled). Every container made here is removed; the
counts before and after are printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiodocker
import anyio
from _stats import compare_rates, median, percentile, print_table
from bench_foundation import RawDocker, containers, gather, gather_each, ms, timed

from rock_sdk import Sandbox, SandboxCluster, SandboxConfig, open_cluster

IMAGE = "python:3.11"
SECTIONS = ["acquire", "row", "bulk"]
TARGETS: list[tuple[str, str, str, bool]] = []  # (what, measured, target, met)


def target(what: str, measured: str, goal: str, met: bool) -> None:
    """Record a figure that has a target, for the final summary."""
    TARGETS.append((what, measured, goal, met))


def quantiles(name: str, values: list[float]) -> list[object]:
    """A table row: name, n, p50, p90, p99, max (milliseconds)."""
    return [
        name,
        len(values),
        ms(median(values)),
        ms(percentile(values, 90)),
        ms(percentile(values, 99)),
        ms(max(values, default=float("nan"))),
    ]


HEADERS = ["side", "n", "p50", "p90", "p99", "max"]


# ---------------------------------------------------------------------- 1. acquire vs cold


async def bench_acquire_vs_cold(cluster: SandboxCluster, raw: RawDocker, reps: int) -> None:
    """Hits from a full pool vs cold starts vs raw create+start, interleaved."""
    config = SandboxConfig(image=IMAGE, cpus=0.25, memory="256m")
    spec = config.to_spec()
    times: dict[str, list[float]] = {
        k: []
        for k in (
            "pool acquire (hit)",
            "  first command after acquire",
            "  acquire + first command",
            "cold start",
            "  first command after start",
            "  start + first command",
            "raw create+start",
        )
    }
    names = list(times)
    assert len(names) == 7
    async with cluster.open_pool(config, min_size=4, name="bench-acquire") as pool:
        await pool.wait_ready()

        async def hit() -> None:
            await pool.wait_ready()  # full before each hand-out: this measures a hit
            hits = pool.statistics().hits
            acquired, sb = await timed(pool.acquire)
            first, result = await timed(lambda: sb.arun("true"))
            assert pool.statistics().hits == hits + 1 and result.exit_code == 0
            times[names[0]].append(acquired)
            times[names[1]].append(first)
            times[names[2]].append(acquired + first)
            await pool.release(sb)
            await pool.wait_ready()  # let the refill finish: the other sides run alone

        async def cold() -> None:
            sb = Sandbox(config, cluster=cluster)
            started, _ = await timed(sb.start)
            first, result = await timed(lambda: sb.arun("true"))
            assert result.exit_code == 0
            times[names[3]].append(started)
            times[names[4]].append(first)
            times[names[5]].append(started + first)
            await sb.delete()

        async def raw_side() -> None:
            elapsed, container = await timed(lambda: raw.start(spec))
            times[names[6]].append(elapsed)
            await raw.remove(container)

        sides: list[Callable[[], Awaitable[None]]] = [hit, cold, raw_side]
        for rep in range(reps):
            for side in sides if rep % 2 == 0 else reversed(sides):  # ABC CBA: drift cancels
                await side()
        stats = pool.statistics()
    rows = [quantiles(name, values) for name, values in times.items()]
    print_table(f"1. acquire vs cold start, {reps} of each, ms", HEADERS, rows)
    print(f"pool: {stats.hits} hits, {stats.misses} misses, {stats.refills} refills")
    acquire = times[names[0]]
    until_command = times[names[2]]
    cold_total = times[names[5]]
    raw_times = times[names[6]]
    print(
        f"ratio p50 cold start+first command / acquire+first command = "
        f"{median(cold_total) / median(until_command):.0f}; raw create+start / acquire+first "
        f"command = {median(raw_times) / median(until_command):.0f}"
    )
    p50, p99 = ms(median(acquire)), ms(percentile(acquire, 99))
    target("acquire p50", f"{p50:.3f} ms", "<= 10 ms", p50 <= 10)
    target("acquire p99", f"{p99:.3f} ms", "<= 50 ms", p99 <= 50)
    p50, p99 = ms(median(until_command)), ms(percentile(until_command, 99))
    target("acquire + first command p50", f"{p50:.3f} ms", "<= 10 ms", p50 <= 10)
    target("acquire + first command p99", f"{p99:.3f} ms", "<= 50 ms", p99 <= 50)


# ---------------------------------------------------------------------- 2. acquires in a row


async def bench_in_a_row(cluster: SandboxCluster, count: int) -> None:
    """`count` acquires back to back, then paced, each with refill running."""
    config = SandboxConfig(image=IMAGE, cpus=0.05, memory="128m")
    rows: list[list[object]] = []
    summary: list[list[object]] = []
    for mode in ("back to back", "paced 4/s, held 1 s"):
        name = "bench-row" + ("-paced" if mode.startswith("paced") else "")
        hit_times: list[float] = []
        miss_times: list[float] = []
        async with cluster.open_pool(config, min_size=8, max_size=16, name=name) as pool:
            await pool.wait_ready()
            began, clock = time.perf_counter(), anyio.current_time()
            async with anyio.create_task_group() as tg:

                async def use(sb: Sandbox, hold: float) -> None:
                    await anyio.sleep(hold)
                    await pool.release(sb)

                for i in range(count):
                    if mode.startswith("paced"):
                        await anyio.sleep_until(clock + i * 0.25)
                    hits = pool.statistics().hits
                    elapsed, sb = await timed(pool.acquire)
                    (hit_times if pool.statistics().hits > hits else miss_times).append(elapsed)
                    result = await sb.arun("true")
                    assert result.exit_code == 0
                    tg.start_soon(use, sb, 1.0 if mode.startswith("paced") else 0.0)
                total = time.perf_counter() - began
            stats = pool.statistics()
        every = hit_times + miss_times
        rows.append(quantiles(f"{mode}: all", every))
        rows.append(quantiles(f"{mode}: hits", hit_times))
        rows.append(quantiles(f"{mode}: misses", miss_times))
        hit_rate = len(hit_times) / count
        summary.append(
            [mode, count, f"{hit_rate:.0%}", stats.refills, f"{stats.refill_rate:.1f}", total]
        )
        if mode.startswith("paced"):
            target("paced acquires: hit rate", f"{hit_rate:.0%}", ">= 95%", hit_rate >= 0.95)
    print_table(f"2. {count} acquires in a row with refill running, ms", HEADERS, rows)
    print_table(
        "2b. hit rate and refills",
        ["mode", "acquires", "hit rate", "refills", "refills/s (last 60 s)", "total s"],
        summary,
    )


# ---------------------------------------------------------------------- 3. bulk create


async def bench_bulk(cluster: SandboxCluster, raw: RawDocker, count: int, rounds: int) -> None:
    """`create_many` of `count` vs raw create+start with 8 and `count` in flight."""
    config = SandboxConfig(image=IMAGE, cpus=0.03, memory="128m")  # 50 x 0.03 cpu fit 2 cpus
    spec = config.to_spec()

    async def sdk() -> float:
        result = await cluster.create_many(config, count)
        assert result.ok, result.failures
        await gather_each(lambda sb: sb.delete(), result.sandboxes, 8)
        return result.elapsed

    async def raw_side(limit: int) -> float:
        made: list[Any] = []

        async def one() -> None:
            made.append(await raw.start(spec))

        elapsed, _ = await timed(lambda: gather(one, count, limit))
        await gather_each(raw.remove, made, 8)
        return elapsed

    sides: dict[str, Callable[[], Awaitable[float]]] = {
        "sdk create_many (8/host)": sdk,
        "raw, 8 in flight": lambda: raw_side(8),
        f"raw, {count} in flight": lambda: raw_side(count),
    }
    title = f"3. bulk create of {count}, {rounds} rounds, sandboxes/s"
    rates = await compare_rates(title, sides, count, rounds)
    names = list(sides)
    sdk_rate = rates[names[0]]
    for name in names[1:]:
        ratio = sdk_rate / rates[name]
        print(f"ratio sdk / {name} = {ratio:.3f}")
    # The same concurrency on both sides is the fair comparison; the other shows what the
    # cluster's start cap (8 per host, `open_cluster(max_starts=...)`) costs here.
    ratio = sdk_rate / rates[names[1]]
    target(f"bulk create sdk / {names[1]}", f"{ratio:.3f}", ">= 0.9", ratio >= 0.9)


# ---------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    """Every comparison, in order."""
    quick, only = args.quick, set(args.only or SECTIONS)
    async with aiodocker.Docker() as docker, open_cluster(["local"]) as cluster:
        raw = RawDocker(docker)
        try:
            if "acquire" in only:
                await bench_acquire_vs_cold(cluster, raw, 10 if quick else 50)
            if "row" in only:
                await bench_in_a_row(cluster, 30 if quick else 100)
            if "bulk" in only:
                await bench_bulk(cluster, raw, 50, 1 if quick else 3)
        finally:
            await raw.cleanup()


def main() -> int:
    """Parse arguments, run, print the summary and the container counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and rounds")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    args = parser.parse_args()
    before = [len(ids) for ids in containers()]
    print(f"containers before (rock.managed, ours, rock.bench): {before}")
    print(f"load average before: {os.getloadavg()}")
    anyio.run(run, args, backend="asyncio")
    rows = [[what, got, goal, "PASS" if ok else "MISS"] for what, got, goal, ok in TARGETS]
    print_table("summary", ["figure", "measured", "target", "result"], rows)
    _, mine, bench = containers()
    after = [len(ids) for ids in containers()]
    print(f"\nload average after: {os.getloadavg()}")
    print(f"containers after (rock.managed, ours, rock.bench): {after}")
    if mine or len(bench) > before[2]:
        print(f"LEAK: left by this run: {mine + bench}; removing them")
        subprocess.run(["docker", "rm", "-f", *mine, *bench], capture_output=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
