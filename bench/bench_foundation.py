"""Benchmark: the SDK's sandbox foundation beside raw Docker (a benchmark, not a test).

Every comparison runs both sides in this one process, interleaved, and prints ratios:

1. Cold start: sequential sandbox starts through an open cluster vs aiodocker create+start of
   the same image with the same container settings; plus first-use latency of
   ``async with Sandbox(...)`` (spawning the embedded agent), informational.
2. Session round trip: ``arun("echo hi", session=s)`` vs a raw attached ``/bin/sh`` exec.
3. Throughput: 20 sandboxes started at once through the SDK vs 20 raw create+start at once.
4. Large files: SDK upload/download MB/s and peak RSS of this process and the agent vs
   ``docker cp``.

Run: ``python bench/bench_foundation.py [--quick]`` (needs Docker and the local image
``python:3.11``; nothing is pulled). Every container made here is removed; the counts before
and after are printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiodocker
import anyio
from _stats import (
    child_pids,
    compare_rates,
    cpu_seconds,
    median,
    peak_rss_kib,
    percentile,
    print_table,
    reset_peak_rss,
    rss_kib,
    sha256,
)

from rock_agent._docker import KEEPALIVE, engine_host_config
from rock_agent._wrap import BOOT, find_end, find_start, new_marker, setup, wrap
from rock_core._cluster import Cluster, open_cluster
from rock_core._errors import TransportError
from rock_core._protocol import Ping, Pong, SandboxSpec
from rock_sdk import Sandbox, SandboxConfig

IMAGE = "python:3.11"
BENCH_LABEL = "rock.bench"
TARGETS: list[tuple[str, str, str, bool]] = []  # (what, measured, target, met)
KILLED_AGENT: list[int] = []  # agents this run had to kill (their sandboxes stay behind)


def target(what: str, measured: str, goal: str, met: bool) -> None:
    """Record a figure that has a target, for the final summary."""
    TARGETS.append((what, measured, goal, met))


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return seconds * 1000


# ---------------------------------------------------------------------- raw Docker side


class RawDocker:
    """Create+start containers straight through aiodocker, with the SDK's container settings."""

    def __init__(self, docker: aiodocker.Docker) -> None:
        self.docker = docker
        self.made: set[str] = set()

    def config(self, spec: SandboxSpec) -> dict[str, Any]:
        """The Engine API body the agent would send for `spec`, labelled as a bench container."""
        return {
            "Image": spec.image,
            "Entrypoint": KEEPALIVE,
            "Cmd": [],
            "Labels": {BENCH_LABEL: "1"},
            "Env": [],
            "HostConfig": engine_host_config(spec),
        }

    async def start(self, spec: SandboxSpec) -> Any:
        """Create and start one container; return it."""
        name = "rock-bench-" + secrets.token_hex(6)
        container = await self.docker.containers.create(self.config(spec), name=name)
        self.made.add(container.id)
        await container.start()
        return container

    async def start_like_agent(self, spec: SandboxSpec) -> Any:
        """The engine calls the agent makes for a create: list, image inspect, create, start,
        inspect (to see how much of the SDK's cost is these extra calls)."""
        name = "rock-bench-" + secrets.token_hex(6)
        filters = f'{{"label": ["{BENCH_LABEL}={name}"]}}'
        await self.docker.containers.list(all=True, filters=filters)
        await self.docker.images.inspect(spec.image)
        container = await self.docker.containers.create(self.config(spec), name=name)
        self.made.add(container.id)
        await container.start()
        await self.docker.containers.get(name)
        return container

    async def remove(self, container: Any) -> None:
        """Force-remove a container made here."""
        await container.delete(force=True, v=True)
        self.made.discard(container.id)

    async def cleanup(self) -> None:
        """Remove whatever is left (after a failure)."""
        with anyio.CancelScope(shield=True):
            for cid in list(self.made):
                try:
                    await self.docker.containers.container(cid).delete(force=True, v=True)
                except aiodocker.DockerError as exc:
                    print(f"could not remove bench container {cid[:12]}: {exc}")
                self.made.discard(cid)


def spec_of(cpus: float = 1.0, memory: str = "1g") -> SandboxSpec:
    """The wire spec of a default sandbox of `IMAGE` with these limits."""
    return SandboxConfig(image=IMAGE, cpus=cpus, memory=memory).to_spec()


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """(seconds, result) of awaiting `fn()`."""
    started = time.perf_counter()
    result = await fn()
    return time.perf_counter() - started, result


def cluster_agent_pid() -> int:
    """The pid of the one local agent this process runs (a child whose cmdline names it)."""
    agents = child_pids(cmdline_contains="rock_agent")
    assert len(agents) == 1, f"expected one agent child process, found {agents}"
    return agents[0]


# ---------------------------------------------------------------------- 1. cold start


async def bench_first_use(reps: int) -> None:
    """First-use latency: `async with Sandbox(...)` including the embedded agent's start."""
    rows = []
    for rep in range(reps):
        started = time.perf_counter()
        async with open_cluster(["local"]):
            opened = time.perf_counter() - started
        cluster_total = time.perf_counter() - started
        started = time.perf_counter()
        sb = Sandbox(SandboxConfig(image=IMAGE))
        await sb.__aenter__()
        entered = time.perf_counter() - started
        try:
            await sb.arun("true")
        finally:
            started = time.perf_counter()
            await sb.__aexit__(None, None, None)
            exited = time.perf_counter() - started
        rows.append([rep + 1, ms(opened), ms(cluster_total - opened), ms(entered), ms(exited)])
    print_table(
        "1b. first use (informational), ms",
        ["rep", "open_cluster enter", "open_cluster exit", "Sandbox enter", "Sandbox exit"],
        rows,
    )


async def bench_cold_start(cluster: Cluster, raw: RawDocker, n: int) -> None:
    """Sequential starts: SDK create_sandbox vs raw create+start (and the agent's call mix)."""
    spec = spec_of()

    async def sdk() -> float:
        elapsed, record = await timed(lambda: cluster.create_sandbox(spec))
        await cluster.delete_sandbox(record.sandbox_id)
        return elapsed

    async def raw_side(like_agent: bool) -> float:
        make = raw.start_like_agent if like_agent else raw.start
        elapsed, container = await timed(lambda: make(spec))
        await raw.remove(container)
        return elapsed

    sides: dict[str, Callable[[], Awaitable[float]]] = {
        "sdk": sdk,
        "raw": lambda: raw_side(False),
        "raw+agent calls": lambda: raw_side(True),
    }
    for side in sides.values():  # warm-up, untimed
        await side()
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(n):
        for name in names if i % 2 == 0 else reversed(names):  # ABC CBA: cancels drift
            times[name].append(await sides[name]())
    rows = [[k, ms(median(v)), ms(percentile(v, 90)), ms(min(v))] for k, v in times.items()]
    print_table(
        f"1. cold start, {n} sequential starts each, ms", ["side", "p50", "p90", "min"], rows
    )
    ratio = median(times["sdk"]) / median(times["raw"])
    explained = median(times["raw+agent calls"]) / median(times["raw"])
    print(f"ratio p50 sdk/raw = {ratio:.3f} (target <= 1.15); raw with the agent's extra engine")
    print(f"calls / raw = {explained:.3f}")
    target("cold start p50 sdk/raw", f"{ratio:.3f}", "<= 1.15", ratio <= 1.15)


# ---------------------------------------------------------------------- 2. session round trip


class RawShell:
    """A shell kept open on an attached exec stream; each command is written, then read until
    its end marker."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def roundtrip(self, data: bytes, end: bytes) -> bytes:
        """Write `data` and read until `end` and the rest of its line; return what came before."""
        await self.stream.write_in(data)
        while (at := self.buffer.find(end)) < 0 or self.buffer.find(b"\n", at) < 0:
            message = await self.stream.read_out()
            if message is None:
                raise RuntimeError("the raw shell ended")
            self.buffer += message.data
        before = bytes(self.buffer[:at])
        del self.buffer[: self.buffer.find(b"\n", at) + 1]
        return before

    async def wrapped(self, data: bytes, marker: bytes) -> bytes:
        """Write a command in the agent's wrapper and read to its end line (its start line and
        everything before it are the wrapper's)."""
        await self.stream.write_in(data)
        while (found := find_end(self.buffer, [marker])) is None:
            message = await self.stream.read_out()
            if message is None:
                raise RuntimeError("the raw shell ended")
            self.buffer += message.data
        before = bytes(self.buffer[max(0, find_start(self.buffer, marker)) : found[1]])
        del self.buffer[: found[3]]
        return before


async def bench_session(cluster: Cluster, docker: aiodocker.Docker, n: int, warmup: int) -> None:
    """`arun("echo hi")` in a session vs raw attached shells in the same container."""
    async with Sandbox(SandboxConfig(image=IMAGE), cluster=cluster) as sb:
        session = await sb.create_session("bench")
        info = (await sb.status()).info
        assert info is not None
        container = await docker.containers.get(info.container_id)
        conn = cluster.connection(sb.sandbox_id)
        dash_exec = await container.exec(["/bin/sh"], stdin=True, stdout=True, tty=False)
        boot = {"stdin": True, "stdout": True, "tty": False, "environment": ["PS1="]}
        bash_exec = await container.exec(["/bin/sh", "-c", BOOT], **boot)
        kit_exec = await container.exec(["/bin/sh", "-c", BOOT], **boot)
        async with (
            dash_exec.start(detach=False) as dash_stream,
            bash_exec.start(detach=False) as bash_stream,
            kit_exec.start(detach=False) as kit_stream,
        ):
            dash, bash, kit = RawShell(dash_stream), RawShell(bash_stream), RawShell(kit_stream)
            ready = new_marker()
            await kit.roundtrip(setup(ready), ready)  # as the agent sets a session's shell up
            plain = b"echo hi; echo __END__\n"

            async def wrapped() -> bytes:
                marker = new_marker()
                data = wrap("echo hi", marker, "bench-1", interactive=False, bash=True)
                return await kit.wrapped(data, marker)

            raw_sides: dict[str, Callable[[], Awaitable[bytes]]] = {
                "raw sh (dash), echo+end": lambda: dash.roundtrip(plain, b"__END"),
                "raw bash -i, echo+end": lambda: bash.roundtrip(plain, b"__END"),
                "raw bash -i, agent's wrapper": wrapped,
            }
            times: dict[str, list[float]] = {
                k: [] for k in ("sdk arun", "  agent-side run", "  ping", *raw_sides)
            }

            agent = cluster_agent_pid()
            cpu = {"bench": 0.0, "agent": 0.0}

            async def one(record: bool) -> None:
                cpu_bench, cpu_agent = time.process_time(), cpu_seconds(agent)
                started = time.perf_counter()
                result = await sb.arun("echo hi", session=session)
                sdk_time = time.perf_counter() - started
                if record:
                    cpu["bench"] += time.process_time() - cpu_bench
                    cpu["agent"] += cpu_seconds(agent) - cpu_agent
                assert result.output == "hi\n", result
                ping, _ = await timed(lambda: conn.call(Ping(id=conn.next_id()), Pong))
                measured = [sdk_time, result.duration, ping]
                for side in raw_sides.values():
                    elapsed, out = await timed(side)
                    assert out == b"hi\n", out
                    measured.append(elapsed)
                if record:
                    for key, value in zip(times, measured, strict=True):
                        times[key].append(value)

            for _ in range(warmup):
                await one(False)
            for _ in range(n):
                await one(True)
    rows = [
        [k, ms(median(v)), ms(percentile(v, 90)), ms(percentile(v, 99))] for k, v in times.items()
    ]
    print_table(
        f"2. session round trip, {n} commands each, ms", ["side", "p50", "p90", "p99"], rows
    )
    per = {k: v / n * 1e6 for k, v in cpu.items()}
    print(f"cpu per sdk command: bench {per['bench']:.0f} us, agent {per['agent']:.0f} us")
    sdk_p50 = ms(median(times["sdk arun"]))
    raw_p50 = ms(median(times["raw sh (dash), echo+end"]))
    print(f"sdk p50 - raw sh p50 = {sdk_p50 - raw_p50:.3f} ms; sdk p50 = {sdk_p50:.3f} ms")
    target("session round trip sdk p50", f"{sdk_p50:.3f} ms", "<= 1 ms", sdk_p50 <= 1.0)


# ---------------------------------------------------------------------- 3. throughput


async def bench_throughput(cluster: Cluster, raw: RawDocker, count: int, rounds: int) -> None:
    """`count` sandboxes started at once: SDK vs raw with `count` and 8 in flight."""
    spec = spec_of(cpus=0.1, memory="512m")  # 20 x 0.1 cpu fits this 2-cpu host's scheduler

    async def sdk() -> float:
        ids: list[str] = []

        async def one() -> None:
            ids.append((await cluster.create_sandbox(spec)).sandbox_id)

        elapsed, _ = await timed(lambda: gather(one, count, count))
        await gather_each(cluster.delete_sandbox, ids, 8)
        return elapsed

    async def raw_side(limit: int) -> float:
        made: list[Any] = []

        async def one() -> None:
            made.append(await raw.start(spec))

        elapsed, _ = await timed(lambda: gather(one, count, limit))
        await gather_each(raw.remove, made, 8)
        return elapsed

    sides: dict[str, Callable[[], Awaitable[float]]] = {
        "sdk (cap 8/host)": sdk,
        f"raw, {count} in flight": lambda: raw_side(count),
        "raw, 8 in flight": lambda: raw_side(8),
    }
    title = f"3. throughput, {count} at once, {rounds} rounds, sandboxes/s"
    rates = await compare_rates(title, sides, count, rounds)
    names = list(sides)
    sdk_rate = rates[names[0]]
    for name in names[1:]:
        ratio = sdk_rate / rates[name]
        print(f"ratio sdk / {name} = {ratio:.3f} (target >= 0.9)")
        target(f"throughput sdk / {name}", f"{ratio:.3f}", ">= 0.9", ratio >= 0.9)


async def gather(fn: Callable[[], Awaitable[Any]], count: int, limit: int) -> None:
    """Run `fn()` `count` times concurrently, at most `limit` at a time."""
    limiter = anyio.CapacityLimiter(limit)

    async def bounded() -> None:
        async with limiter:
            await fn()

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(bounded)


async def gather_each(fn: Callable[[Any], Awaitable[Any]], items: list[Any], limit: int) -> None:
    """`fn(item)` for every item, at most `limit` at a time."""
    it = iter(items)
    await gather(lambda: fn(next(it)), len(items), limit)


# ---------------------------------------------------------------------- 4. large files


def make_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path`; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for start in range(0, size, 1 << 20):
            block = os.urandom(min(1 << 20, size - start))
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


class TransferHung(Exception):
    """An SDK transfer did not finish within its watchdog; the agent was killed to free the
    engine (a stuck archive stream blocks every other operation on that container)."""


async def bench_files(cluster: Cluster, size: int, rounds: int) -> None:
    """Upload/download of one `size`-byte file: SDK (MB/s, peak RSS) vs `docker cp`."""
    agent, me = cluster_agent_pid(), os.getpid()
    mb = size / 1e6
    watchdog = max(30.0, size / 5e6)
    speeds: dict[str, list[float]] = {
        k: [] for k in ("sdk upload", "docker cp in", "sdk download", "docker cp out")
    }
    memory: list[list[object]] = []
    worst: dict[tuple[str, str], float] = {}  # largest peak RSS growth (MiB) per (op, process)
    with tempfile.TemporaryDirectory(prefix="rock-bench-") as tmp:
        src = Path(tmp) / "src.bin"
        digest = await anyio.to_thread.run_sync(make_file, src, size)

        async def sdk(op: str, fn: Callable[[], Awaitable[Any]], out: Path | None) -> None:
            before = {}
            for who, pid in (("bench", me), ("agent", agent)):
                reset_ok = reset_peak_rss(pid)
                hwm = peak_rss_kib(pid) if reset_ok else rss_kib(pid)
                before[who] = (hwm, reset_ok, cpu_seconds(pid))
            with anyio.move_on_after(watchdog) as scope:
                elapsed, _ = await timed(fn)
            if scope.cancelled_caught:
                target(f"{op} finishes", f"hung > {watchdog:.0f} s", "finishes", False)
                print(f"{op} hung for {watchdog:.0f} s; killing agent {agent} to free the engine")
                os.kill(agent, signal.SIGKILL)
                KILLED_AGENT.append(agent)
                raise TransferHung(op)
            speeds[op].append(mb / elapsed)
            for who, pid in (("bench", me), ("agent", agent)):
                hwm, reset_ok, cpu = before[who]
                after = peak_rss_kib(pid)
                growth = (after - hwm) / 1024
                used = cpu_seconds(pid) - cpu
                memory.append([op, who, hwm // 1024, after // 1024, growth, reset_ok, used])
                worst[op, who] = max(worst.get((op, who), 0.0), growth)
            if out is not None:
                assert await anyio.to_thread.run_sync(sha256, out) == digest

        async def cp(op: str, source: str, dest: str, out: Path | None) -> None:
            argv = ["docker", "cp", source, dest]
            elapsed, _ = await timed(lambda: anyio.run_process(argv))
            speeds[op].append(mb / elapsed)
            if out is not None:
                assert await anyio.to_thread.run_sync(sha256, out) == digest

        try:
            async with Sandbox(SandboxConfig(image=IMAGE), cluster=cluster) as sb:
                info = (await sb.status()).info
                assert info is not None
                cid = info.container_id
                for r in range(rounds):
                    down, cp_out = Path(tmp) / f"sdk{r}.bin", Path(tmp) / f"cp{r}.bin"
                    await sdk("sdk upload", lambda: sb.upload(src, "/tmp/sdk.bin"), None)
                    await cp("docker cp in", str(src), f"{cid}:/tmp/cp.bin", None)
                    await sdk("sdk download", partial(sb.download, "/tmp/sdk.bin", down), down)
                    await cp("docker cp out", f"{cid}:/tmp/cp.bin", str(cp_out), cp_out)
                    down.unlink()
                    cp_out.unlink()
        except (TransferHung, TransportError) as exc:
            print(f"file section abandoned: {type(exc).__name__}: {exc}")
    rows = [
        [k, len(v), median(v), min(v, default=0.0), max(v, default=0.0)] for k, v in speeds.items()
    ]
    title = f"4. large file, {mb:.0f} MB, up to {rounds} rounds, MB/s (MB = 10^6 bytes)"
    print_table(title, ["op", "n", "median", "min", "max"], rows)
    for op, ref in (("sdk upload", "docker cp in"), ("sdk download", "docker cp out")):
        if speeds[op] and speeds[ref]:
            print(f"ratio {op} / {ref} = {median(speeds[op]) / median(speeds[ref]):.3f}")
    for (op, who), growth in worst.items():
        goal = f"< 10% of {size / 2**20:.0f} MiB"
        ok = growth < 0.1 * size / 2**20
        target(f"{op}: {who} peak RSS growth (worst)", f"{growth:.1f} MiB", goal, ok)
    print_table(
        "4b. peak RSS (VmHWM, reset to current RSS just before each op), MiB",
        ["op", "process", "before", "after", "growth", "hwm reset", "cpu s"],
        memory,
    )


# ---------------------------------------------------------------------- main


def containers() -> tuple[list[str], list[str], list[str]]:
    """Ids of (all rock.managed, rock.managed owned by this pid, rock.bench) containers."""

    def rows(*argv: str) -> list[str]:
        out = subprocess.run(["docker", "ps", "-a", *argv], capture_output=True, text=True)
        return out.stdout.split()

    managed = rows(
        "--filter", "label=rock.managed=1", "--format", '{{.ID}}:{{.Label "rock.owner"}}'
    )
    mine = [m.split(":")[0] for m in managed if m.split(":")[3:4] == [str(os.getpid())]]
    bench = rows("-q", "--filter", f"label={BENCH_LABEL}=1")
    return [m.split(":")[0] for m in managed], mine, bench


async def run(args: argparse.Namespace) -> None:
    """Every comparison, in order."""
    quick = args.quick
    await bench_first_use(1 if quick else 3)
    async with aiodocker.Docker() as docker, open_cluster(["local"]) as cluster:
        raw = RawDocker(docker)
        try:
            await bench_cold_start(cluster, raw, 5 if quick else 20)
            await bench_session(cluster, docker, 300 if quick else 2000, 50)
            await bench_throughput(cluster, raw, 20, 3)
            await bench_files(cluster, (50 if quick else 200) * 10**6, 1 if quick else 3)
        finally:
            await raw.cleanup()


def main() -> int:
    """Parse arguments, run, print the summary and the container counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 50 MB file")
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
        why = "expected: its agent was killed" if KILLED_AGENT and not bench else "LEAK"
        print(f"{why}: left by this run: {mine + bench}; removing them")
        subprocess.run(["docker", "rm", "-f", *mine, *bench], capture_output=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
