"""Benchmark: forking 16 sandboxes from a checkpoint beside 16 cold starts of the base image
(not a test).

A python:3.11 sandbox writes 200 MB of random files, is checkpointed, then, in the same run and
interleaved round by round: 16 forks from the checkpoint (`cluster.fork`) and 16 cold starts of
python:3.11 (`create_many`), each batch timed from the first create to the last running
sandbox, then deleted. Printed: the medians, the ratio fork / cold (target: at most 1.5), and the
load average before and after (the machine is shared: only the ratio means much).

``--ssh``: the same on a second host over SSH (two network-namespace hosts sharing this engine,
from tests/cluster/_netns; needs root): the checkpoint is made on h1, h1 is drained, and the
first batch of forks on h2 includes streaming the checkpoint there (its image, base layers and
all, through the core).

Run: ``PYTHONPATH=src python bench/bench_fork.py [--rounds 3] [--n 16] [--ssh]`` (needs Docker
and the local image python:3.11; nothing is pulled).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _stats import median, print_table

from rock_core import SshOptions
from rock_sdk import SandboxCluster, SandboxConfig, open_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster._netns import open_netns_hosts

IMAGE = "python:3.11"
SMALL = SandboxConfig(image=IMAGE, cpus=0.1, memory="64m")
CHANGES = (
    "import os\n"
    "os.makedirs('/root/state', exist_ok=True)\n"
    "for i in range(20):\n"
    "    with open(f'/root/state/r{i}.bin', 'wb') as f:\n"
    "        f.write(os.urandom(10 << 20))\n"
)


async def batch(cluster: SandboxCluster, start: object) -> float:
    """Seconds to start one batch (`start()`), then delete what it started."""
    began = time.perf_counter()
    sandboxes = await start()  # type: ignore[operator]
    took = time.perf_counter() - began
    async with anyio.create_task_group() as tg:
        for sb in sandboxes:
            tg.start_soon(sb.delete)
    return took


async def compare(cluster: SandboxCluster, n: int, rounds: int, where: str) -> None:
    parent = await cluster.create_sandbox(SandboxConfig(image=IMAGE, cpus=0.5, memory="512m"))
    result = await parent.execute(["python3", "-c", CHANGES], timeout=300)
    assert result.exit_code == 0, result
    began = time.perf_counter()
    cp = await parent.checkpoint()
    made = time.perf_counter() - began
    print(
        f"{where}: checkpoint of 200 MB of changes: {made:.2f} s, image {cp.size / 2**20:.0f} MiB"
    )
    source = cluster.core.record(parent.sandbox_id).host
    await parent.delete()  # a checkpoint needs no parent: its room goes to the forks
    if len(cluster.hosts) > 1:
        cluster.drain_host(source)  # every fork lands on the other host: it is streamed there

    async def forks() -> list[object]:
        return list(await cluster.fork(cp, n, SMALL))

    async def colds() -> list[object]:
        return list((await cluster.create_many(SMALL, n, check=True)).sandboxes)

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"fork": [], "cold": []}
    first = await batch(cluster, forks)  # the first fork batch carries any copy to the host
    for _ in range(rounds):
        times["fork"].append(await batch(cluster, forks))
        times["cold"].append(await batch(cluster, colds))
    load_after = os.getloadavg()
    rows = [
        [name, f"{median(v):.2f}", " ".join(f"{x:.2f}" for x in v)] for name, v in times.items()
    ]
    rows.append(["first fork batch", f"{first:.2f}", "(includes the copy, if any)"])
    print_table(f"{where}: {n} sandboxes, {rounds} rounds", ["batch", "median s", "all"], rows)
    ratio = median(times["fork"]) / median(times["cold"])
    print(
        f"{where}: fork / cold = {ratio:.2f} (target <= 1.5); first fork batch / cold ="
        f" {first / median(times['cold']):.2f}"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    await cp.delete()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--ssh", action="store_true", help="also fork to a second host over SSH")
    args = parser.parse_args()
    async with open_cluster(["local"]) as cluster:
        await compare(cluster, args.n, args.rounds, "local")
    if args.ssh:
        source = Path(__file__).resolve().parent.parent / "src"
        with tempfile.TemporaryDirectory() as folder, open_netns_hosts(2) as netns:
            agent = Path(folder) / "rock-agent"
            agent.write_text(
                f'#!/bin/sh\nPYTHONPATH={source} exec {sys.executable} -m rock_agent "$@"\n'
            )
            agent.chmod(0o755)
            ssh = SshOptions(
                known_hosts=str(netns.known_hosts), client_keys=[str(netns.client_key)]
            )
            urls = [f"{h.url}&agent={agent}" for h in netns]
            async with open_cluster(urls, ssh=ssh) as cluster:
                await compare(cluster, args.n, args.rounds, "ssh (h1 -> h2)")


if __name__ == "__main__":
    anyio.run(main)
