"""A rollout-style program: one embedded core, many sandboxes, commands run concurrently.

Every sandbox is removed when the block ends, and also if this program is killed: the local
agent sees its pipe close and removes them.
"""

import anyio

from rock_core import Cluster, open_cluster
from rock_sdk import Sandbox, SandboxConfig


async def rollout(cluster: Cluster, i: int, results: dict[int, str]) -> None:
    config = SandboxConfig(image="python:3.11", cpus=0.25, memory="256m")
    async with Sandbox(config, cluster=cluster) as sb:
        r = await sb.arun(f"python3 -c 'print({i} ** 2)'", timeout=30)
        results[i] = r.output.strip()


async def main() -> None:
    results: dict[int, str] = {}
    async with open_cluster(["local"]) as cluster:
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(rollout, cluster, i, results)
        stats = cluster.statistics()
        print("placements:", stats.placements, "queue depth now:", stats.queue_depth)
    print(dict(sorted(results.items())))


anyio.run(main)
