"""Benchmark: density, what idle sandboxes with open sessions cost (a benchmark, not a test).

N busybox sandboxes are started on the local agent and each gets K open shell sessions; then
nothing happens for a window. Read off the processes (/proc and the containers' cgroups):

- the agent's RSS, file descriptors and threads per session (growth over N, from before the
  first sandbox to after the last session), and its CPU over the idle window;
- the core's (this process's) RSS per sandbox: the core plus the SDK's objects;
- the containers' own CPU over the window (what the idle shells themselves cost);
- against the raw way to hold a shell open: one ``docker exec -i CONTAINER sh`` client per
  session on the same containers (RSS of those client processes per session, and dockerd's
  growth for both ways).

Targets (docs/benchmarks.md, "Density"): no thread per session; 0 CPU per idle session in the
agent and the core (their CPU over the window no more than over the same window with no sandbox,
plus 10 % and two clock ticks); agent RSS per session at most 1/4 of a raw ``docker exec``
client's.

Run: ``python bench/bench_density.py [--n 200] [--sessions 5] [--window 30] [--quick]``
(200 sandboxes is what this 2-core host's ledger holds at the smallest cpu share, 0.01; 5
sessions each make 1,000). Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import anyio
from _stats import child_pids, cpu_seconds, print_table, rss_kib
from bench_pause import cpu_seconds as container_cpu_seconds

from rock_sdk import Sandbox, SandboxConfig, open_cluster

IMAGE = "rock-test/busybox:latest"
SMALL = SandboxConfig(image=IMAGE, memory="16m", cpus=0.01)


def fds(pid: int) -> int:
    """Open file descriptors of `pid`."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def threads(pid: int) -> int:
    """Threads of `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def dockerd_pid() -> int | None:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout
    return int(found.split()[0]) if found.split() else None


def reading(pid: int) -> dict[str, float]:
    return {"rss": rss_kib(pid), "fds": fds(pid), "threads": threads(pid), "cpu": cpu_seconds(pid)}


async def open_sessions(sandboxes: list[Sandbox], per_sandbox: int) -> None:
    limit = anyio.Semaphore(16)

    async def one(sb: Sandbox, name: str) -> None:
        async with limit:
            await sb.create_session(name)
            result = await sb.arun("echo ready", session=name)
            assert result.output == "ready\n", result

    async with anyio.create_task_group() as tg:
        for sb in sandboxes:
            for k in range(per_sandbox):
                tg.start_soon(one, sb, f"idle{k}")


def raw_clients(container_ids: list[str], dockerd: int | None) -> list[list[object]]:
    """Hold one ``docker exec -i ID sh`` per container; RSS of the clients and dockerd growth."""
    before = rss_kib(dockerd) if dockerd else 0
    procs = [
        subprocess.Popen(
            ["docker", "exec", "-i", cid, "sh"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for cid in container_ids
    ]
    try:
        for proc in procs:  # each shell answers: the session is really open
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"echo ready\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"ready\n"
        time.sleep(2)
        clients = sum(rss_kib(p.pid) for p in procs)
        grown = (rss_kib(dockerd) - before) if dockerd else 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    n = len(procs)
    return [
        ["raw docker exec -i sh: client RSS per session (KiB)", clients / n],
        ["raw docker exec -i sh: dockerd RSS growth per session (KiB)", grown / n],
    ]


async def main(n: int, per_sandbox: int, window: float, raw_n: int) -> None:
    dockerd = dockerd_pid()
    docker_before = rss_kib(dockerd) if dockerd else 0
    core_before = reading(os.getpid())
    async with open_cluster(["local"]) as cluster:
        agents = child_pids(cmdline_contains="rock_agent")
        assert len(agents) == 1, f"expected one local agent child, found {agents}"
        agent = agents[0]
        await anyio.sleep(1)
        b0, q0 = cpu_seconds(agent), cpu_seconds(os.getpid())
        await anyio.sleep(window)  # the same window with no sandbox: the fixed background
        base_agent, base_core = cpu_seconds(agent) - b0, cpu_seconds(os.getpid()) - q0
        agent_before = reading(agent)
        made = await cluster.create_many(SMALL, n, concurrency=16, check=True)
        sandboxes = made.sandboxes
        try:
            await open_sessions(sandboxes, per_sandbox)
            await anyio.sleep(3)  # let the start-up garbage settle
            agent_after = reading(agent)
            core_after = reading(os.getpid())
            docker_after = rss_kib(dockerd) if dockerd else 0
            ids = []
            for sb in sandboxes:
                info = (await sb.status()).info
                assert info is not None
                ids.append(info.container_id)
            c0 = sum(container_cpu_seconds(c) for c in ids)
            a0, k0, t0 = cpu_seconds(agent), cpu_seconds(os.getpid()), time.monotonic()
            await anyio.sleep(window)
            a1, k1, took = cpu_seconds(agent), cpu_seconds(os.getpid()), time.monotonic() - t0
            c1 = sum(container_cpu_seconds(c) for c in ids)
            raw = await anyio.to_thread.run_sync(raw_clients, ids[:raw_n], dockerd)
        finally:
            with anyio.CancelScope(shield=True):
                limit = anyio.Semaphore(16)

                async def gone(sb: Sandbox) -> None:
                    async with limit:
                        await sb.delete()

                async with anyio.create_task_group() as tg:
                    for sb in sandboxes:
                        tg.start_soon(gone, sb)

    sessions = n * per_sandbox

    def per(after: dict[str, float], before: dict[str, float], key: str) -> float:
        return (after[key] - before[key]) / sessions

    agent_rss = per(agent_after, agent_before, "rss")
    rows: list[list[object]] = [
        ["agent RSS per session (KiB)", agent_rss],
        ["agent fds per session", per(agent_after, agent_before, "fds")],
        [
            "agent threads (before -> after)",
            f"{agent_before['threads']:.0f} -> {agent_after['threads']:.0f}",
        ],
        ["core + SDK RSS per sandbox (KiB)", per(core_after, core_before, "rss") * per_sandbox],
        [
            "dockerd RSS growth per session (KiB)",
            (docker_after - docker_before) / sessions if dockerd else float("nan"),
        ],
        [f"agent CPU over {took:.0f} s idle, all {sessions} sessions (ms)", (a1 - a0) * 1e3],
        ["agent CPU over the same window with no sandbox (ms)", base_agent * 1e3],
        [f"core CPU over {took:.0f} s idle (ms)", (k1 - k0) * 1e3],
        ["core CPU over the same window with no sandbox (ms)", base_core * 1e3],
        [f"containers' CPU over {took:.0f} s idle, all {n} (ms)", (c1 - c0) * 1e3],
        *raw,
    ]
    print_table(
        f"Density: {n} idle sandboxes, {per_sandbox} open session(s) each",
        ["figure", "value"],
        rows,
    )
    raw_client = float(raw[0][1])  # type: ignore[arg-type]
    print(
        f"agent RSS per session / raw docker exec client RSS per session: "
        f"{agent_rss / raw_client:.3f}; load average {os.getloadavg()[0]:.2f}"
    )
    tick = 1 / os.sysconf("SC_CLK_TCK")  # /proc's CPU times come in ticks
    checks = [
        ("no thread per session", agent_after["threads"] - agent_before["threads"] < sessions / 10),
        ("0 agent CPU per idle session", (a1 - a0) <= base_agent * 1.1 + 2 * tick),
        ("0 core CPU per idle sandbox", (k1 - k0) <= base_core * 1.1 + 2 * tick),
        ("agent RSS/session <= 1/4 raw client", agent_rss <= raw_client / 4),
    ]
    for what, met in checks:
        print(f"target: {what}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=5, help="open sessions per sandbox")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--raw", type=int, default=50, help="sessions in the raw baseline")
    parser.add_argument("--quick", action="store_true", help="20 sandboxes, a 10 s window")
    args = parser.parse_args()
    n, window = (20, 10.0) if args.quick else (args.n, args.window)
    anyio.run(main, n, 1 if args.quick else args.sessions, window, min(args.raw, n))
