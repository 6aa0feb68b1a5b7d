"""Benchmark: file transfers through the SDK beside `docker cp` (a benchmark, not a test).

For each size and each transport (the local pipe; with ``--ssh`` also SSH to the loopback sshd),
rounds of: ``sb.upload``, ``docker cp`` in, ``sb.download``, ``docker cp`` out, one file of
random bytes, every copy checked by sha256. It prints MB/s (median, min, max), the ratios SDK /
``docker cp``, the peak RSS growth (VmHWM reset just before each SDK transfer) and CPU seconds
of this process and of the agent, and the load average before and after each part.

    python bench/bench_transfer.py                        # 200 MB, local pipe, 3 rounds
    python bench/bench_transfer.py --sizes 200 2000 --ssh
    python bench/bench_transfer.py --profile DIR          # py-spy of both processes

With ``--profile DIR`` one more upload and download run under py-spy (raw collapsed stacks,
both processes), written to DIR as ``{upload,download}-{bench,agent}.txt``.

Needs Docker and the local image ``python:3.11`` (nothing is pulled), and for ``--ssh`` the
test sshd of ``scripts/setup-host.sh`` (``/tmp/rock-sshd``). Every container made here is
removed; an agent started over SSH is stopped by its pid.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from _stats import (
    child_pids,
    cpu_seconds,
    median,
    peak_rss_kib,
    print_table,
    reset_peak_rss,
    rss_kib,
    sha256,
)

from rock_core import SshOptions
from rock_sdk import Sandbox, SandboxCluster, SandboxConfig, open_cluster

IMAGE = "python:3.11"
SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
SPY = ["py-spy", "record", "--format", "raw", "--idle", "--rate", "500", "--nonblocking"]
OPS = ("sdk upload", "docker cp in", "sdk download", "docker cp out")


def make_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path`; return their sha256."""
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for start in range(0, size, 1 << 20):
            # A fresh prefix per MiB: no two blocks alike, without 2 GB of urandom.
            piece = (start.to_bytes(8, "big") + block[8:])[: min(1 << 20, size - start)]
            digest.update(piece)
            f.write(piece)
    return digest.hexdigest()


def load() -> str:
    """The load average, as text."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pids_with(text: str) -> list[int]:
    """Pids of processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if text in cmdline and int(entry.name) != os.getpid():
                    found.append(int(entry.name))
    return found


@contextlib.asynccontextmanager
async def transport(name: str, tmp: Path) -> AsyncIterator[tuple[SandboxCluster, int]]:
    """An open cluster over `name` ("pipe" or "ssh") and its agent's pid."""
    if name == "pipe":
        async with open_cluster(["local"]) as cluster:
            (agent,) = child_pids(cmdline_contains="rock_agent")
            yield cluster, agent
        return
    socket = str(tmp / "agent.sock")
    options = SshOptions(
        known_hosts=str(SSH_DIR / "known_hosts"), client_keys=[str(SSH_DIR / "id")]
    )
    try:
        address = f"ssh://root@127.0.0.1:2222?socket={socket}"
        async with open_cluster([address], ssh=options) as cluster:
            (agent,) = pids_with(f"serve --socket {socket}")
            yield cluster, agent
    finally:
        for pid in pids_with(f"serve --socket {socket}"):
            os.kill(pid, signal.SIGTERM)


async def bench(cluster: SandboxCluster, agent: int, size: int, rounds: int, tmp: Path) -> None:
    """`rounds` of the four copies of one `size`-byte file; print speeds, ratios, memory."""
    me, mb = os.getpid(), size / 1e6
    speeds: dict[str, list[float]] = {op: [] for op in OPS}
    memory: list[list[object]] = []
    src = tmp / "src.bin"
    digest = await anyio.to_thread.run_sync(make_file, src, size)

    async def timed(op: str, fn: Callable[[], Awaitable[Any]], out: Path | None) -> None:
        sdk = op.startswith("sdk")
        before = {
            who: (reset(pid), cpu_seconds(pid)) for who, pid in (("bench", me), ("agent", agent))
        }
        started = time.perf_counter()
        try:
            await fn()
        except subprocess.CalledProcessError as exc:  # the engine's, not ours: say so, go on
            print(f"{op} failed: {exc}: {exc.stderr.decode(errors='replace').strip()}")
            return
        speeds[op].append(mb / (time.perf_counter() - started))
        if sdk:
            for who, pid in (("bench", me), ("agent", agent)):
                hwm, cpu = before[who]
                growth = (peak_rss_kib(pid) - hwm) / 1024
                memory.append(
                    [op, who, growth, 100 * growth / (size / 2**20), cpu_seconds(pid) - cpu]
                )
        if out is not None:
            assert await anyio.to_thread.run_sync(sha256, out) == digest, f"{op}: wrong bytes"
            out.unlink()

    sb = await cluster.create_sandbox(SandboxConfig(image=IMAGE, memory="1g"))
    try:
        cid = (await sb.status()).info.container_id  # type: ignore[union-attr]
        down, cp_out = tmp / "sdk.out", tmp / "cp.out"
        for _ in range(rounds):
            await timed("sdk upload", lambda: sb.upload(src, "/tmp/sdk.bin"), None)
            await timed("docker cp in", lambda: cp(str(src), f"{cid}:/tmp/cp.bin"), None)
            await timed("sdk download", lambda: sb.download("/tmp/sdk.bin", down), down)
            await timed("docker cp out", lambda: cp(f"{cid}:/tmp/cp.bin", str(cp_out)), cp_out)
    finally:
        await sb.delete()
        src.unlink()
    rows = [
        [op, len(v), median(v), min(v, default=0), max(v, default=0)] for op, v in speeds.items()
    ]
    print_table(f"{mb:.0f} MB, {rounds} rounds, MB/s", ["op", "n", "median", "min", "max"], rows)
    for op, ref in (("sdk upload", "docker cp in"), ("sdk download", "docker cp out")):
        if speeds[op] and speeds[ref]:
            print(f"ratio {op} / {ref} = {median(speeds[op]) / median(speeds[ref]):.3f}")
    print_table(
        "peak RSS growth (VmHWM reset before each SDK transfer)",
        ["op", "process", "growth MiB", "% of file", "cpu s"],
        memory,
    )


def reset(pid: int) -> int:
    """Reset `pid`'s peak RSS to its RSS; return the value to measure growth from (KiB)."""
    return peak_rss_kib(pid) if reset_peak_rss(pid) else rss_kib(pid)


async def cp(source: str, dest: str) -> None:
    """`docker cp source dest`."""
    await anyio.run_process(["docker", "cp", source, dest], stdout=None)


async def profile(cluster: SandboxCluster, agent: int, size: int, tmp: Path, out: Path) -> None:
    """One upload and one download under py-spy, both processes (raw collapsed stacks)."""
    out.mkdir(parents=True, exist_ok=True)
    src = tmp / "src.bin"
    await anyio.to_thread.run_sync(make_file, src, size)
    sb: Sandbox = await cluster.create_sandbox(SandboxConfig(image=IMAGE, memory="1g"))
    try:
        for op in ("upload", "download"):
            spies = [
                await anyio.open_process(
                    [*SPY, "-p", str(pid), "-o", str(out / f"{op}-{who}.txt")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for who, pid in (("bench", os.getpid()), ("agent", agent))
            ]
            await anyio.sleep(1.0)  # py-spy attaches
            started = time.perf_counter()
            if op == "upload":
                await sb.upload(src, "/tmp/p.bin")
            else:
                await sb.download("/tmp/p.bin", tmp / "p.out")
            print(f"profiled {op}: {size / 1e6 / (time.perf_counter() - started):.0f} MB/s")
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                await spy.wait()
    finally:
        await sb.delete()
        src.unlink()


async def run(args: argparse.Namespace) -> None:
    """Every size over every transport."""
    for name in args.over or (("pipe", "ssh") if args.ssh else ("pipe",)):
        with tempfile.TemporaryDirectory(prefix="rock-bench-") as tmp:
            async with transport(name, Path(tmp)) as (cluster, agent):
                for mb in args.sizes if args.rounds else ():
                    print(f"\n=== {name}, {mb} MB; load average before: {load()}")
                    await bench(cluster, agent, mb * 10**6, args.rounds, Path(tmp))
                    print(f"load average after: {load()}")
                if args.profile:
                    await profile(
                        cluster, agent, args.sizes[0] * 10**6, Path(tmp), args.profile / name
                    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200], help="MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=3, help="0: only the profile")
    parser.add_argument("--ssh", action="store_true", help="also over SSH to 127.0.0.1:2222")
    parser.add_argument("--over", nargs="+", choices=["pipe", "ssh"], help="these transports")
    parser.add_argument("--profile", type=Path, help="py-spy both processes into this folder")
    args = parser.parse_args()
    print(f"load average before: {load()}")
    anyio.run(run, args, backend="asyncio")
    print(f"\nload average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
