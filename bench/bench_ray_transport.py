"""Benchmark: the Ray transport (the agent reached through a relay actor) beside SSH (not a test).

One Ray node started by this process (``ray.init`` with one CPU), its relay actor, and one
socket agent that all sides share: the actor's (``<dir>/<host id>/agent.sock``), reached

- ``ray actor``: `RayAgentConnector` (actor calls: send, long-poll receive);
- ``ssh``: the loopback sshd of ``scripts/setup-host.sh``, stream-local forwarding to it;
- ``unix socket``: straight to it (the floor of both).

Interleaved round by round, each side opens a cluster, makes one sandbox, and measures
``arun("echo hi", session=s)`` round trips and ``upload`` of a 20 MB file (then reads its size
back). It prints p50/p90 per side, the ratios ray / ssh, and the load average before and after.

Run: ``python bench/bench_ray_transport.py [--commands N] [--rounds R] [--uploads U]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from _stats import median, percentile, print_table

from rock_core import Connector
from rock_sdk import SandboxCluster, SandboxConfig, SshOptions, open_cluster
from rock_sdk.integrations.ray import RayAgentConnector

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
IMAGE = "rock-test/busybox:latest"
HOST_ID = "rock-bench-ray"
UPLOAD = 20 << 20


async def measure(
    cluster: SandboxCluster, commands: int, uploads: int, blob: Path
) -> tuple[list[float], list[float]]:
    sb = await cluster.create_sandbox(SandboxConfig(image=IMAGE, memory="128m"))
    await sb.create_session("bench")
    for _ in range(20):  # warm up
        await sb.arun("echo hi", session="bench")
    trips = []
    for _ in range(commands):
        start = time.perf_counter()
        await sb.arun("echo hi", session="bench")
        trips.append(time.perf_counter() - start)
    sends = []
    for _ in range(uploads):
        start = time.perf_counter()
        await sb.upload(blob, "/tmp/blob")
        sends.append(time.perf_counter() - start)
        size = await sb.arun("wc -c < /tmp/blob", session="bench")
        assert size.output.strip() == str(UPLOAD), size.output
    await sb.delete()
    return trips, sends


async def main(commands: int, rounds: int, uploads: int) -> None:
    # A local Ray started with token auth writes ~/.ray/auth_token, which every later
    # `ray start` of this user then needs: this benchmark's Ray runs without it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="rock-bench-ray-"))
    socket = folder / HOST_ID / "agent.sock"
    blob = folder / "blob"
    blob.write_bytes(os.urandom(UPLOAD))
    await anyio.to_thread.run_sync(
        lambda: ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    )
    node = ray.get_runtime_context().get_node_id()
    ssh = SshOptions(known_hosts=str(SSH_DIR / "known_hosts"), client_keys=[str(SSH_DIR / "id")])
    ray_host = RayAgentConnector(node, host_id=HOST_ID, socket_dir=str(folder))
    sides: dict[str, tuple[Sequence[str | Connector], SshOptions | None]] = {
        "ray actor": ([ray_host], None),  # first: its actor starts the shared agent
        "ssh, stream-local forward": ([f"ssh://root@127.0.0.1:2222?socket={socket}"], ssh),
        "unix socket, same agent": ([f"unix://{socket}"], None),
    }
    trips: dict[str, list[float]] = {name: [] for name in sides}
    sends: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for _ in range(rounds):
            for name, (hosts, options) in sides.items():
                async with open_cluster(hosts, ssh=options) as cluster:
                    t, s = await measure(cluster, commands // rounds, uploads, blob)
                    trips[name] += t
                    sends[name] += s
    finally:
        await anyio.run_process(["pkill", "-TERM", "-f", f"serve --socket {socket}"], check=False)
        await anyio.to_thread.run_sync(ray.shutdown)
        shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()
    rows: list[list[Any]] = []
    for name in sides:
        ms = [t * 1000 for t in trips[name]]
        mb_s = [UPLOAD / (1 << 20) / t for t in sends[name]]
        rows.append([name, median(ms), percentile(ms, 90), median(mb_s), min(mb_s)])
    print_table(
        f"session echo round trip ({commands} per side, ms) and 20 MB upload"
        f" ({uploads * rounds} per side, MB/s)",
        ["side", "echo p50", "echo p90", "upload MB/s p50", "upload MB/s worst"],
        rows,
    )
    ray_row, ssh_row, unix_row = rows
    print(
        f"   echo p50: ray / ssh = {ray_row[1] / ssh_row[1]:.2f}x,"
        f" ray / unix = {ray_row[1] / unix_row[1]:.2f}x"
    )
    print(
        f"   upload p50: ray / ssh = {ray_row[3] / ssh_row[3]:.2f}x of the speed,"
        f" ray / unix = {ray_row[3] / unix_row[3]:.2f}x"
    )
    print(f"   load average before {load_before}, after {load_after}, on {os.cpu_count()} cores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=2)
    args = parser.parse_args()
    anyio.run(main, args.commands, args.rounds, args.uploads)
