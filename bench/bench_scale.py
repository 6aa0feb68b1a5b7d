"""Benchmark: the scheduler at scale, with fake agents (a benchmark, not a test).

Thousands of concurrent `create_sandbox` calls go through the real embedded core
(`rock_core.open_cluster`, its `Scheduler`, `AgentConnection`s and the msgspec protocol) to
`rock_core.testing.FakeAgent`s served by worker processes (4 by default, 50 agents each over
200 hosts), each agent on its own unix socket (`_fake_hosts.py`): the fakes' CPU is not the
core's, and the figures are the core's own. ``--in-process`` serves them in this process over
memory streams instead, as before. Each fake create takes a start latency drawn per sandbox
from a distribution (lognormal by default, around the ~0.2 s a real create+start takes on this
machine class) behind a per-host engine cap (a real engine here tops out near 7 creates/s). The
script reports:

1. the sans-IO `Scheduler` alone in a tight loop: placement decisions per second;
2. for each burst size (1,000 and 16,000 over 200 hosts by default): end-to-end create
   latency beside ROCK's published figures; the control plane's own overhead per sandbox
   (call time minus the time queued for a start slot minus the fake's own start delay); the
   queue wait; decisions per second as observed; memory per sandbox (RSS delta); wall time;
   CPU per sandbox of the core and, apart, of the fake agents' processes; teardown time;
3. retained memory per sandbox split between the core and the fake agents (tracemalloc, on a
   burst with no latency).

Run: ``python bench/bench_scale.py [--quick]`` (no Docker needed). ``--help`` lists the
options: hosts, burst sizes, latency distribution and seed, engine rate, backend, workers,
``--no-gc-tuning`` (open the cluster with ``gc_tuning=False``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from _fake_hosts import open_fake_hosts
from _stats import median, percentile, print_table, rss_kib

import rock_core
import rock_core.testing
from rock_core import Cluster, Demand, Resources, SandboxSpec, Scheduler
from rock_core._scheduler import Action
from rock_core.testing import FakeCluster, LognormalLatency, StartLatency, open_fake_cluster

GiB = 1 << 30
IMAGE = "python:3.11"
SPEC = SandboxSpec(image=IMAGE, cpus=1, memory=2 * GiB)
HOST_CPUS = 96.0  # room for 80 such sandboxes per host (16,000 / 200) without queueing for room
HOST_MEMORY = 384 * GiB
OVERHEAD_TARGET_MS = 50.0
# ROCK's published figures for concurrent sandbox creation (issue 3): size -> (p50 s, p99 s).
ROCK_FIGURES: dict[int, tuple[float, float]] = {1000: (4.93, 8.69), 16000: (39.98, 60.11)}
CORE_DIR = str(Path(rock_core.__file__).resolve().parent)
FAKES_FILES = {
    str(Path(rock_core.testing.__file__).resolve().with_name(name))
    for name in ("testing.py", "_fake_agent.py", "_fake_latency.py", "_memory.py")
}
SIDES = ("core", "fake agents", "other")


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return seconds * 1000


def spread(values: Sequence[float], scale: Callable[[float], float] = ms) -> list[object]:
    """p50, p99 and max of `values`, scaled (milliseconds by default); dashes if empty."""
    if not values:
        return ["-", "-", "-"]
    return [scale(percentile(values, 50)), scale(percentile(values, 99)), scale(max(values))]


# ------------------------------------------------------------------------- sans-IO scheduler


def new_scheduler(hosts: int, policy: str, max_starts: int, max_queue: int) -> Scheduler:
    """A scheduler with `hosts` equal hosts that all have the image."""
    scheduler = Scheduler(
        "spread" if policy == "spread" else "binpack",
        max_queue=max_queue,
        default_max_starts=max_starts,
    )
    for index in range(hosts):
        scheduler.add_host(
            f"h{index}", Resources(cpus=HOST_CPUS, memory=HOST_MEMORY), images=[IMAGE]
        )
    return scheduler


@dataclass
class Timing:
    """One timed phase of the bare scheduler."""

    phase: str
    calls: int
    placements: int
    seconds: float

    @property
    def us_per_call(self) -> float:
        """Microseconds per call."""
        return self.seconds / self.calls * 1e6

    @property
    def placements_per_second(self) -> float:
        """Placement decisions made per second of this phase."""
        return self.placements / self.seconds

    def row(self) -> list[object]:
        """This phase as a table row."""
        return [self.phase, self.calls, self.placements, self.seconds, self.us_per_call]


def bench_scheduler(args: argparse.Namespace, n: int, churn: int) -> list[Timing]:
    """Time the bare `Scheduler`: a burst of `n` through its queue, then steady churn."""
    demand = Demand(cpus=SPEC.cpus, memory=SPEC.memory, image=IMAGE)
    scheduler = new_scheduler(args.hosts, args.policy, args.max_starts, n)

    # Burst: n submits at once; then each start frees a slot and places the next queued one.
    placed: list[str] = []
    began = time.perf_counter()
    for i in range(n):
        placed.extend(a.request_id for a in scheduler.submit(f"r{i}", demand, 0.0))
    submitted = time.perf_counter()
    immediate = len(placed)
    cursor = 0
    while cursor < len(placed):
        placed.extend(a.request_id for a in scheduler.started(placed[cursor], 0.0))
        cursor += 1
    drained = time.perf_counter()
    assert len(placed) == n and scheduler.statistics().queue_depth == 0

    # Churn at full occupancy: release the oldest, submit a new one, mark it started.
    live = list(placed)
    decisions = 0
    began_churn = time.perf_counter()
    for i in range(churn):
        scheduler.release(live[i], 0.0)
        actions = scheduler.submit(f"c{i}", demand, 0.0)
        decisions += len(actions)
        for action in actions:
            scheduler.started(action.request_id, 0.0)
        live.append(f"c{i}")
    took = time.perf_counter() - began_churn
    assert decisions == churn
    return [
        Timing("submit (burst)", n, immediate, submitted - began),
        Timing("started -> next placement", n, n - immediate, drained - submitted),
        Timing("burst, submit to all placed", 2 * n, n, drained - began),
        Timing("churn: release+submit+started", churn, decisions, took),
    ]


def decision_cost(args: argparse.Namespace, n: int) -> list[list[object]]:
    """Microseconds per placement decision at full occupancy, for a range of host counts."""
    rows: list[list[object]] = []
    for hosts in sorted({max(1, args.hosts // 4), max(1, args.hosts // 2), args.hosts}):
        live = min(n, hosts * int(HOST_CPUS / SPEC.cpus) * 3 // 4)
        sub = argparse.Namespace(hosts=hosts, policy=args.policy, max_starts=args.max_starts)
        churn = bench_scheduler(sub, live, args.churn // 4)[-1]
        per_call = churn.us_per_call
        rows.append([hosts, live, per_call, per_call / hosts * 1000, churn.placements_per_second])
    return rows


# ------------------------------------------------------------------------------ full runs


class SchedulerProbe:
    """Times every call into a live cluster's scheduler and notes when each request was placed.

    It wraps the scheduler's public event methods on that one instance; the scheduler itself is
    untouched.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.placed_at: dict[str, float] = {}
        self.at_submit: set[str] = set()  # placed by their own submit: the first wave
        self.busy = 0.0
        self.calls = 0
        self.decisions = 0
        for name in ("submit", "started", "start_failed", "release", "cancel"):
            setattr(scheduler, name, self._timed(getattr(scheduler, name), name == "submit"))

    def _timed(
        self, method: Callable[..., list[Action]], submit: bool
    ) -> Callable[..., list[Action]]:
        def timed(*args: Any, **kwargs: Any) -> list[Action]:
            began = time.perf_counter()
            try:
                actions = method(*args, **kwargs)
            finally:
                done = time.perf_counter()
                self.busy += done - began
                self.calls += 1
            for action in actions:
                self.placed_at[action.request_id] = done
                if submit:
                    self.at_submit.add(action.request_id)
            self.decisions += len(actions)
            return actions

        return timed


class GcWatch:
    """Counts the garbage collector's pauses while installed."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._began = 0.0

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._began)


@dataclass
class Burst:
    """What one burst of concurrent creates measured."""

    n: int
    hosts: int
    e2e_burst: list[float] = field(default_factory=list)  # from the burst's start, s
    e2e_call: list[float] = field(default_factory=list)  # from this call's start, s
    queued: list[float] = field(default_factory=list)  # call start -> placed, s
    fake: list[float] = field(default_factory=list)  # engine wait + drawn latency, s
    overhead: list[float] = field(default_factory=list)  # call - queued - fake, s
    late: list[float] = field(default_factory=list)  # fake sleep overshoot, s
    first_wave: list[bool] = field(default_factory=list)  # placed by its own submit
    wall: float = 0.0  # burst start -> last create returned, s
    spawn: float = 0.0  # burst start -> last call begun, s
    teardown: float = 0.0  # leaving the cluster (deletes every sandbox), s
    teardown_cpu: float = 0.0  # this process's CPU time over the teardown, s
    cpu: float = 0.0  # this process's CPU time over the burst, s
    fakes_cpu: float = 0.0  # the worker processes' CPU time over the burst, s
    rss_delta_kib: int = 0
    decisions: int = 0
    scheduler_busy: float = 0.0  # time inside scheduler calls, s
    scheduler_calls: int = 0
    gc_pauses: list[float] = field(default_factory=list)


Starts = dict[str, tuple[float, float, float]]  # sandbox id -> engine wait, latency, slept


@asynccontextmanager
async def open_hosts(
    args: argparse.Namespace, n: int, latency: StartLatency
) -> AsyncIterator[tuple[Cluster, Callable[[], Awaitable[tuple[Starts, float]]]]]:
    """The cluster under test and a way to read its fakes' start timings (and their CPU
    seconds): fake agents in worker processes over unix sockets, or (`--in-process`) in this
    process and event loop over memory streams."""
    if args.in_process:
        async with open_fake_cluster(
            args.hosts,
            policy=args.policy,
            max_queue=n,
            max_starts=args.max_starts,
            cpus=HOST_CPUS,
            memory=HOST_MEMORY,
            images=[IMAGE],
            start_latency=latency,
            engine_rate=args.engine_rate,
        ) as fake_cluster:
            yield fake_cluster, fake_starts(fake_cluster)
        return
    agent = {
        "cpus": HOST_CPUS,
        "memory": HOST_MEMORY,
        "images": [IMAGE],
        "engine_rate": args.engine_rate,
        "latency": args.latency,
        "median": args.median,
        "sigma": args.sigma,
        "seed": args.seed,
        "maximum": args.max_latency,
    }
    async with open_fake_hosts(args.hosts, args.workers, agent) as fakes:
        async with rock_core.open_cluster(
            fakes.addresses,
            owner="bench-scale",
            policy=args.policy,
            max_queue=n,
            max_starts=args.max_starts,
            gc_tuning=not args.no_gc_tuning,
        ) as cluster:
            yield cluster, fakes.starts


async def run_burst(args: argparse.Namespace, n: int, latency: StartLatency) -> Burst:
    """Open a cluster over fake hosts, create `n` sandboxes at once, measure, tear it down."""
    async with open_hosts(args, n, latency) as (cluster, read_starts):
        result = await burst_on(cluster, args, n, read_starts)
        teardown_began = time.perf_counter()
        teardown_cpu = time.process_time()
    result.teardown = time.perf_counter() - teardown_began
    result.teardown_cpu = time.process_time() - teardown_cpu
    return result


async def burst_on(
    cluster: Cluster,
    args: argparse.Namespace,
    n: int,
    read_starts: Callable[[], Awaitable[tuple[Starts, float]]],
) -> Burst:
    """Create `n` sandboxes at once on an open cluster of fake hosts and measure them (no
    teardown); `read_starts` reads the fakes' start timings and CPU seconds."""
    result = Burst(n=n, hosts=len(cluster.hosts))
    began_at: dict[str, float] = {}
    ended_at: dict[str, float] = {}
    probe = SchedulerProbe(cluster.scheduler)

    async def create(sandbox_id: str) -> None:
        began_at[sandbox_id] = time.perf_counter()
        await cluster.create_sandbox(SPEC, sandbox_id=sandbox_id)
        ended_at[sandbox_id] = time.perf_counter()

    ids = [f"sb-{i:05d}" for i in range(n)]
    gc.collect()
    _, fakes_cpu_before = await read_starts()
    rss_before = rss_kib(os.getpid())
    cpu_before = time.process_time()
    if args.no_gc:
        gc.disable()
    try:
        with GcWatch() as watch:
            burst_began = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for sandbox_id in ids:
                    tg.start_soon(create, sandbox_id)
    finally:
        gc.enable()
    result.cpu = time.process_time() - cpu_before
    result.rss_delta_kib = rss_kib(os.getpid()) - rss_before
    result.gc_pauses = watch.pauses
    result.wall = max(ended_at.values()) - burst_began
    result.spawn = max(began_at.values()) - burst_began
    starts, fakes_cpu = await read_starts()
    result.fakes_cpu = fakes_cpu - fakes_cpu_before
    collect(result, starts, probe, ids, began_at, ended_at, burst_began)
    return result


def fake_starts(cluster: FakeCluster) -> Callable[[], Awaitable[tuple[Starts, float]]]:
    """A reader of the start timings of `cluster`'s in-process fake agents (no CPU apart)."""

    async def read() -> tuple[Starts, float]:
        return {
            sandbox_id: (start.engine_wait, start.latency, start.slept)
            for agent in cluster.agents.values()
            for sandbox_id, start in agent.starts.items()
        }, 0.0

    return read


def collect(
    result: Burst,
    starts: Starts,
    probe: SchedulerProbe,
    ids: list[str],
    began_at: dict[str, float],
    ended_at: dict[str, float],
    burst_began: float,
) -> None:
    """Turn the raw timestamps into per-sandbox figures."""
    for sandbox_id in ids:
        engine_wait, latency, slept = starts[sandbox_id]
        call = ended_at[sandbox_id] - began_at[sandbox_id]
        queued = probe.placed_at[sandbox_id] - began_at[sandbox_id]
        fake = engine_wait + latency
        result.e2e_burst.append(ended_at[sandbox_id] - burst_began)
        result.e2e_call.append(call)
        result.queued.append(queued)
        result.fake.append(fake)
        result.overhead.append(call - queued - fake)
        result.late.append(slept - fake)
        result.first_wave.append(sandbox_id in probe.at_submit)
    result.decisions = probe.decisions
    result.scheduler_busy = probe.busy
    result.scheduler_calls = probe.calls


# ------------------------------------------------------------------------------ memory


def owner_of(traceback: tracemalloc.Traceback | None) -> str:
    """Which side made an allocation: the fake agents, the core, or anything else."""
    files = [_resolved(frame.filename) for frame in traceback or ()]
    if FAKES_FILES.intersection(files):
        return "fake agents"
    if any(f.startswith(CORE_DIR) for f in files):
        return "core"
    return "other"


@functools.cache
def _resolved(filename: str) -> str:
    return str(Path(filename).resolve())


@dataclass
class Memory:
    """What `n` live sandboxes hold, by the side that allocated it."""

    n: int
    size: dict[str, int] = field(default_factory=dict)  # bytes, by side
    tracked = 0  # new objects the cyclic GC must scan, whole process


async def measure_memory(args: argparse.Namespace, n: int) -> Memory:
    """Bytes and GC-tracked objects still held after `n` creates (no start latency)."""
    memory = Memory(n, {k: 0 for k in SIDES})
    async with open_fake_cluster(
        args.hosts,
        policy=args.policy,
        max_queue=n,
        max_starts=args.max_starts,
        cpus=HOST_CPUS,
        memory=HOST_MEMORY,
        images=[IMAGE],
    ) as cluster:

        async def create(sandbox_id: str) -> None:
            await cluster.create_sandbox(SPEC, sandbox_id=sandbox_id)

        gc.collect()
        existing = {id(o) for o in gc.get_objects()}
        tracemalloc.start(5)  # enough frames to tell the sides apart
        try:
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(create, f"sb-{i:05d}")
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
            memory.tracked = sum(id(o) not in existing for o in gc.get_objects())
        finally:
            tracemalloc.stop()
        assert len(cluster.records()) == n
    for trace in snapshot.traces:
        memory.size[owner_of(trace.traceback)] += trace.size
    return memory


# ------------------------------------------------------------------------------ report


def report_burst(result: Burst, args: argparse.Namespace) -> None:
    """Print one burst's tables."""
    n = result.n
    floor = (
        f"engine floor n/(hosts x rate) = {n / (result.hosts * args.engine_rate):.2f} s"
        if args.engine_rate
        else "no engine cap"
    )
    first = [o for o, w in zip(result.overhead, result.first_wave, strict=True) if w]
    rest = [o for o, w in zip(result.overhead, result.first_wave, strict=True) if not w]
    print_table(
        f"2. {n:,} concurrent creates over {result.hosts} hosts, ms",
        ["figure", "p50", "p99", "max"],
        [
            ["end to end, from the burst's start", *spread(result.e2e_burst)],
            ["end to end, from the call's start", *spread(result.e2e_call)],
            ["  queued for a start slot (call -> placed)", *spread(result.queued)],
            ["  fake start delay (engine wait + latency)", *spread(result.fake)],
            ["  control-plane overhead (the rest)", *spread(result.overhead)],
            ["    of which: fake's sleep woken late", *spread(result.late)],
            ["    outside the fake's sleep", *spread(_minus(result.overhead, result.late))],
            [f"  overhead, first wave ({len(first):,} placed at once)", *spread(first)],
            [f"  overhead, the rest ({len(rest):,} placed from the queue)", *spread(rest)],
        ],
    )
    pauses = result.gc_pauses
    print(
        f"wall {result.wall:.2f} s (all calls begun after {result.spawn:.2f} s); {floor};"
        f" {n / result.wall:,.0f} creates/s;"
        f" teardown (delete all) {result.teardown:.2f} s"
    )
    side = (
        "core and fake agents, one process"
        if args.in_process
        else f"the core alone; the fake agents' {args.workers} processes:"
        f" {result.fakes_cpu:.2f} s = {ms(result.fakes_cpu / n):.3f} ms per sandbox"
    )
    print(
        f"cpu {result.cpu:.2f} s = {ms(result.cpu / n):.3f} ms per sandbox ({side});"
        f" gc: {len(pauses)} collections, max pause"
        f" {ms(max(pauses, default=0.0)):.1f} ms, total {sum(pauses):.2f} s"
    )
    print(
        f"scheduler: {result.decisions:,} placements, {result.scheduler_calls:,} calls,"
        f" {result.scheduler_busy:.3f} s inside = {result.decisions / result.scheduler_busy:,.0f}"
        f" decisions per scheduler-second, {result.decisions / result.wall:,.0f} per wall second"
    )
    print(
        f"RSS delta over the burst: {result.rss_delta_kib / 1024:.1f} MiB ="
        f" {result.rss_delta_kib * 1024 / n / 1024:.2f} KiB per sandbox"
        " (whole process: core, fake agents and their records)"
    )


def _minus(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def report_rock(results: list[Burst]) -> list[list[object]]:
    """Rows setting our end-to-end figures beside ROCK's published ones."""
    rows: list[list[object]] = []
    for result in results:
        rock = ROCK_FIGURES.get(result.n)
        p50, p99 = percentile(result.e2e_burst, 50), percentile(result.e2e_burst, 99)
        rock_cells: list[object] = (
            [rock[0], rock[1], rock[0] / p50, rock[1] / p99] if rock else ["-", "-", "-", "-"]
        )
        rows.append([f"{result.n:,}", result.hosts, p50, p99, *rock_cells])
    return rows


# ------------------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> int:
    """Every phase, in order; returns the exit status (a missed target is reported, not 1)."""
    latency: StartLatency
    if args.latency == "lognormal":
        latency = LognormalLatency(
            args.median, args.sigma, seed=args.seed, maximum=args.max_latency
        )
        described = (
            f"{latency!r}: p50 {latency.quantile(0.5):.3f} s, p99 {latency.quantile(0.99):.3f} s,"
            f" p99.99 {latency.quantile(0.9999):.3f} s"
        )
    else:
        latency = args.median
        described = f"fixed {args.median:g} s"
    print(f"python {platform.python_version()}, backend {args.backend}, pid {os.getpid()}")
    print(f"load average before: {os.getloadavg()}")
    print(
        f"hosts {args.hosts} (cpus {HOST_CPUS:g}, memory {HOST_MEMORY // GiB} GiB each),"
        f" policy {args.policy}, max starts in flight per host {args.max_starts}"
    )
    print(f"spec: {SPEC.image}, cpus {SPEC.cpus:g}, memory {SPEC.memory // GiB} GiB")
    print(f"start latency: {described}")
    rate = f"{args.engine_rate:g} creates/s per host" if args.engine_rate else "none"
    print(f"engine rate cap: {rate}")
    print(f"bursts: {', '.join(f'{n:,}' for n in args.sizes)}", flush=True)
    print(
        "garbage collector: "
        + ("off during bursts" if args.no_gc else "on")
        + ("" if args.in_process else f", cluster gc_tuning={not args.no_gc_tuning}")
    )
    total_began = time.perf_counter()

    timings = bench_scheduler(args, max(args.sizes), args.churn)
    print_table(
        f"1. sans-IO Scheduler alone, {args.hosts} hosts, {args.policy}",
        ["phase", "calls", "placements", "seconds", "us per call"],
        [t.row() for t in timings],
    )
    burst_rate = timings[2].placements_per_second
    churn_rate = timings[3].placements_per_second
    print(
        f"placement decisions per second: burst {burst_rate:,.0f},"
        f" churn at {max(args.sizes):,} live {churn_rate:,.0f}"
    )
    print_table(
        "1b. cost of one placement decision (churn) by number of hosts",
        ["hosts", "live", "us per decision", "ns per host", "decisions/s"],
        decision_cost(args, max(args.sizes)),
    )
    sys.stdout.flush()

    results: list[Burst] = []
    for n in args.sizes:
        result = await run_burst(args, n, latency)
        results.append(result)
        report_burst(result, args)
        sys.stdout.flush()

    print_table(
        "end-to-end create latency beside ROCK's published figures, s",
        ["concurrent", "hosts", "ours p50", "ours p99", "ROCK p50", "ROCK p99", "p50 x", "p99 x"],
        report_rock(results),
    )
    where = "in this process" if args.in_process else f"in {args.workers} other processes"
    print(
        f"(ours: fake agents {where}, start latency and engine cap as above; ROCK: real"
        " containers on its own cluster. Ratios compare control-plane design, not Docker.)"
    )

    memory = await measure_memory(args, args.memory_n)
    print_table(
        f"3. memory held after {args.memory_n:,} creates (tracemalloc, no start latency)",
        ["allocated by", "MiB", "bytes per sandbox"],
        [[side, memory.size[side] / (1 << 20), memory.size[side] / memory.n] for side in SIDES],
    )
    print(
        f"objects the garbage collector tracks, whole process: {memory.tracked / memory.n:.1f}"
        " per sandbox ('other': anyio/asyncio allocations with no rock_core frame in the"
        " 5 innermost frames)"
    )

    largest = results[-1]
    overhead_p99 = ms(percentile(largest.overhead, 99))
    waves = {
        "first wave": [o for o, w in zip(largest.overhead, largest.first_wave, strict=True) if w],
        "placed from the queue": [
            o for o, w in zip(largest.overhead, largest.first_wave, strict=True) if not w
        ],
    }
    summary = [
        [
            f"control-plane overhead p99, {largest.n:,}",
            f"{overhead_p99:.1f} ms",
            f"< {OVERHEAD_TARGET_MS:g} ms",
            "PASS" if overhead_p99 < OVERHEAD_TARGET_MS else "MISS",
        ],
        [
            f"control-plane overhead p50, {largest.n:,}",
            f"{ms(median(largest.overhead)):.1f} ms",
            "",
            "",
        ],
        *(
            [f"  overhead p50 / p99, {wave}", _p50_p99(values), "", ""]
            for wave, values in waves.items()
        ),
        [
            f"garbage collector, {largest.n:,} burst",
            f"{sum(largest.gc_pauses):.2f} s, max pause {ms(max(largest.gc_pauses, default=0)):.0f}"
            " ms",
            "",
            "",
        ],
        [
            f"teardown (delete all {largest.n:,})",
            f"{largest.teardown:.2f} s; this process's CPU"
            f" {ms(largest.teardown_cpu / largest.n):.3f} ms per sandbox",
            "<= engine floor + 10 %",
            "fakes: floor 0",
        ],
        ["placement decisions/s, Scheduler alone (burst)", f"{burst_rate:,.0f}", "", ""],
        ["placement decisions/s, Scheduler alone (churn)", f"{churn_rate:,.0f}", "", ""],
        ["core memory per sandbox", f"{memory.size['core'] / memory.n / 1024:.2f} KiB", "", ""],
        ["total wall time", f"{time.perf_counter() - total_began:.1f} s", "", ""],
    ]
    print_table("summary", ["figure", "measured", "target", "result"], summary)
    print(f"load average after: {os.getloadavg()}")
    return 0


def _p50_p99(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{ms(percentile(values, 50)):.1f} / {ms(percentile(values, 99)):.1f} ms"


def sizes(text: str) -> list[int]:
    """Parse a comma-separated list of burst sizes."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"burst sizes must be positive integers, got {text!r}")
    return values


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 2,000 over 100 hosts")
    parser.add_argument("--hosts", type=int, help="fake hosts (default 200; quick 100)")
    parser.add_argument("--sizes", type=sizes, help="burst sizes (default 1000,16000)")
    parser.add_argument("--latency", choices=["lognormal", "fixed"], default="lognormal")
    parser.add_argument("--median", type=float, default=0.2, help="median start latency, s")
    parser.add_argument("--sigma", type=float, default=0.5, help="lognormal sigma (tail)")
    parser.add_argument("--max-latency", type=float, default=5.0, help="latency clip, s")
    parser.add_argument("--seed", type=int, default=1, help="seed of the latency draws")
    parser.add_argument(
        "--engine-rate", type=float, default=7.0, help="creates/s per host engine; 0: no cap"
    )
    parser.add_argument("--max-starts", type=int, default=8, help="starts in flight per host")
    parser.add_argument("--policy", choices=["spread", "binpack"], default="spread")
    parser.add_argument("--churn", type=int, help="scheduler churn iterations (default 20000)")
    parser.add_argument("--memory-n", type=int, help="creates for the tracemalloc phase")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--no-gc-tuning",
        action="store_true",
        help="open the cluster with gc_tuning=False (the process's collector as it is)",
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="processes that serve the fake agents (default 4)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the fake agents in this process over memory streams (the old setup)",
    )
    parser.add_argument(
        "--no-gc", action="store_true", help="turn the garbage collector off during each burst"
    )
    args = parser.parse_args()
    args.hosts = args.hosts or (100 if args.quick else 200)
    args.sizes = args.sizes or ([1000, 2000] if args.quick else [1000, 16000])
    args.churn = args.churn or (5000 if args.quick else 20000)
    args.memory_n = args.memory_n or (500 if args.quick else 2000)
    args.engine_rate = args.engine_rate or None
    room = int(min(HOST_CPUS / SPEC.cpus, HOST_MEMORY / SPEC.memory)) * args.hosts
    if max(args.sizes) > room:
        parser.error(f"{max(args.sizes):,} sandboxes do not fit {args.hosts} hosts ({room:,})")
    return anyio.run(run, args, backend=args.backend)


if __name__ == "__main__":
    sys.exit(main())
