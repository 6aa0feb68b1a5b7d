"""One trainer process for `test_ray_limiter`: its own core over fake agents, gated by the
shared start limiter. Writes each start's span (as its fake agents saw it) to a JSON file.

Usage: python ray_limiter_trainer.py ADDRESS NAME MAX_STARTS LEASE CREATES LATENCY OUT
A LATENCY of 0 or more seconds per start; OUT "-" writes nothing (a trainer that is killed).
"""

from __future__ import annotations

import json
import sys
from functools import partial

import anyio
import ray

from rock_core import SandboxSpec, open_cluster
from rock_core.testing import FakeAgent, FakeAgentConnector
from rock_sdk.integrations.ray import open_start_limiter

SPEC = SandboxSpec(image="img:1", cpus=0.1, memory=64 << 20)


async def main(
    address: str, name: str, cap: int, lease: float, n: int, latency: float, out: str
) -> None:
    ray.init(address=address, namespace="rock", log_to_driver=False)
    agents = [FakeAgent(host_id=f"h{i}", start_latency=latency) for i in range(2)]
    connectors = [FakeAgentConnector(agent) for agent in agents]
    async with open_start_limiter(name, max_starts=cap, lease=lease) as gate:
        async with open_cluster(connectors, start_gate=gate, queue_timeout=None) as cluster:
            print("ready", flush=True)
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(partial(cluster.create_sandbox, SPEC, sandbox_id=f"sb-{i}"))
            spans = [[s.began, s.began + s.slept] for a in agents for s in a.starts.values()]
            if out != "-":
                found = {"spans": spans, "created": len(cluster.records())}
                await anyio.Path(out).write_text(json.dumps(found))
    ray.shutdown()


if __name__ == "__main__":
    a = sys.argv[1:]
    anyio.run(main, a[0], a[1], int(a[2]), float(a[3]), int(a[4]), float(a[5]), a[6])
