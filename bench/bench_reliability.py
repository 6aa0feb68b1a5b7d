"""Benchmark: the agent under hostile programs, hostile input and a long soak (not a test).

All against one real socket agent in this run, each figure beside its baseline:

1. Bystander: the echo round trip of a session in one sandbox, p50 and p99, while nothing
   else runs, then while another sandbox on the same agent runs each hostile program (fork
   bomb, memory hog, output flood, CPU hog, disk fill). Target: p99 during <= 3x p99 before.
2. Fuzz: hostile connections (`tests/reliability/fuzz.py`), one after another, each read to
   its end (the agent has handled all of it), then a good client must still be served:
   inputs per second survived.
3. Soak: create, run, write, read, delete, on 4 workers for `--soak` seconds (600 by
   default), the agent's RSS and open descriptors sampled along the way. Target: flat.

Run: ``python bench/bench_reliability.py [--quick] [--soak SECONDS]`` (needs Docker and the
local images ``python:3.11`` and ``rock-test/busybox:latest``). Every container made here is
removed; the count left is printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anyio
from _stats import percentile, print_table, rss_kib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis.errors import NonInteractiveExampleWarning
from tests.reliability._agents import SocketAgent, serves
from tests.reliability.fuzz import hostile_session

from rock_core import RockError
from rock_sdk import Sandbox, SandboxConfig, open_cluster

PY = "python:3.11"
HOSTILE: dict[str, str] = {
    "fork bomb": "f() { f | f & }; f",
    "memory hog": "python3 -c 'b = b\"x\" * (1 << 30)'",
    "output flood": "yes rock | head -c 500000000",
    "cpu hog": "for i in 1 2 3 4; do (while :; do :; done) & done; wait",
    "disk fill": "dd if=/dev/zero of=/tmp/fill bs=1M count=512 2>&1; rm -f /tmp/fill",
}
TARGETS: list[tuple[str, str, str, bool]] = []


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def echo_rtts(sb: Sandbox, count: int, seconds: float = 0.0) -> list[float]:
    """At least `count` echo round trips, and for at least `seconds`."""
    times: list[float] = []
    until = time.perf_counter() + seconds
    while len(times) < count or time.perf_counter() < until:
        started = time.perf_counter()
        result = await sb.arun("echo hi", session="bystander", timeout=30)
        times.append(time.perf_counter() - started)
        assert result.output == "hi\n", result
    return times


async def bystander(agent: SocketAgent, count: int) -> None:
    print(f"\n== 1. a bystander's echo round trip beside hostile programs ({load()})")
    rows = []
    async with open_cluster([agent.address]) as cluster:
        quiet = await cluster.create_sandbox(SandboxConfig(image=PY, memory="256m", cpus=0.5))
        hostile = await cluster.create_sandbox(
            SandboxConfig(image=PY, memory="128m", cpus=1, pids=256)
        )
        await quiet.create_session("bystander")
        await echo_rtts(quiet, 20)  # warm up
        before = await echo_rtts(quiet, count)
        p99_before = percentile(before, 99)
        rows.append(["nothing else", percentile(before, 50) * 1e3, p99_before * 1e3, 1.0, "-"])
        for name, command in HOSTILE.items():
            outcome = "?"
            async with anyio.create_task_group() as tg:

                async def run_hostile(command: str = command) -> None:
                    nonlocal outcome
                    try:
                        r = await hostile.arun(command, timeout=15)
                        outcome = (
                            f"exit {r.exit_code}"
                            + (" timed out" if r.timed_out else "")
                            + (" OOM" if getattr(r, "oom_killed", False) else "")
                            + (" truncated" if r.truncated else "")
                        )
                    except RockError as exc:
                        outcome = f"{type(exc).__name__}"

                tg.start_soon(run_hostile)
                await anyio.sleep(1.0)  # let it get going
                during = await echo_rtts(quiet, count, seconds=3.0)
            ratio = percentile(during, 99) / p99_before
            rows.append(
                [name, percentile(during, 50) * 1e3, percentile(during, 99) * 1e3, ratio, outcome]
            )
            TARGETS.append((f"bystander p99 during {name}", f"{ratio:.2f}x", "<= 3x", ratio <= 3))
    print_table(
        f"echo round trip, {count} each (ms)",
        ["beside", "p50", "p99", "p99 ratio", "hostile"],
        rows,
    )


def fuzz(agent: SocketAgent, count: int) -> None:
    print(f"\n== 2. hostile connections, as fast as they go ({load()})")
    warnings.simplefilter("ignore", NonInteractiveExampleWarning)
    strategy = hostile_session("bench-fuzzer", ["nope", "x/../y", "sb-1"])
    sessions = [strategy.example() for _ in range(count)]
    started = time.perf_counter()
    for data in sessions:
        # Half-close, then read to the end: the agent ends the connection only once it has
        # read, decoded and answered (or refused) everything sent.
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(agent.socket))
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(1 << 16):
                    pass
            except OSError:
                pass  # the agent may close a bad connection before it has read it all
    elapsed = time.perf_counter() - started
    alive = agent.alive and serves(agent)
    rate = count / elapsed
    print(
        f"{count} hostile connections in {elapsed:.2f} s: {rate:.0f}/s; agent serves after: {alive}"
    )
    TARGETS.append(("fuzz inputs survived", f"{rate:.0f}/s", "agent serves after", alive))


async def soak(agent: SocketAgent, seconds: float) -> None:
    print(f"\n== 3. soak: create, run, write, read, delete for {seconds:.0f} s ({load()})")
    assert agent.process is not None
    pid = agent.process.pid
    samples: list[list[object]] = []
    cycles = 0
    failures: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    every = max(5.0, seconds / 20)

    async def worker(cluster: object) -> None:
        nonlocal cycles
        while time.monotonic() < deadline:
            try:
                sb = await cluster.create_sandbox(  # type: ignore[attr-defined]
                    SandboxConfig(image=PY, memory="128m", cpus=0.25)
                )
                try:
                    await sb.arun("echo soak > /tmp/x && cat /tmp/x", timeout=30)
                    await sb.write_file("/tmp/y", b"y" * 4096)
                    assert await sb.read_file("/tmp/y") == b"y" * 4096
                finally:
                    await sb.delete()
                cycles += 1
            except RockError as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    async with open_cluster([agent.address]) as cluster:
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(worker, cluster)
            while time.monotonic() < deadline:
                samples.append(
                    [
                        f"{time.monotonic() - started:.0f}",
                        cycles,
                        rss_kib(pid) / 1024,
                        open_fds(pid),
                    ]
                )
                await anyio.sleep(min(every, max(0.0, deadline - time.monotonic())))
        samples.append(
            [f"{time.monotonic() - started:.0f}", cycles, rss_kib(pid) / 1024, open_fds(pid)]
        )
    print_table("agent over the soak", ["s", "cycles", "RSS MiB", "fds"], samples)
    print(f"failures: {failures or 'none'}")
    half = len(samples) // 2
    early = max(float(s[2]) for s in samples[1 : half + 1] or samples)  # type: ignore[arg-type]
    late = max(float(s[2]) for s in samples[half:])  # type: ignore[arg-type]
    fds_early = max(int(s[3]) for s in samples[1 : half + 1] or samples)  # type: ignore[call-overload]
    fds_late = max(int(s[3]) for s in samples[half:])  # type: ignore[call-overload]
    growth = late / early if early else float("nan")
    TARGETS.append(
        ("soak: agent RSS, 2nd half / 1st half peak", f"{growth:.2f}x", "<= 1.1x", growth <= 1.1)
    )
    TARGETS.append(
        (
            "soak: agent fds, 2nd half / 1st half peak",
            f"{fds_late}/{fds_early}",
            "flat",
            fds_late <= fds_early + 2,
        )
    )
    TARGETS.append(("soak: failed cycles", str(sum(failures.values())), "0", not failures))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a 60 s soak")
    parser.add_argument("--soak", type=float, default=None, help="soak seconds (default 600)")
    args = parser.parse_args()
    rounds = 100 if args.quick else 300
    soak_seconds = args.soak if args.soak is not None else (60.0 if args.quick else 600.0)
    print(f"bench_reliability: {load()}, {os.cpu_count()} cpus")
    agent = SocketAgent(Path(tempfile.mkdtemp(prefix="rock-bench-rel-"))).start()
    try:
        await bystander(agent, rounds)
        fuzz(agent, 500 if args.quick else 2000)
        await soak(agent, soak_seconds)
    finally:
        agent.stop()
        left = agent.containers()
        agent.remove_containers()
    print_table(
        f"targets ({load()})",
        ["what", "measured", "target", "met"],
        [[w, m, t, "yes" if ok else "NO"] for w, m, t, ok in TARGETS],
    )
    print(f"containers left behind: {len(left)}")


if __name__ == "__main__":
    anyio.run(main)
