"""Public fakes for testing code built on rock_core, with no Docker and no processes.

- `memory_stream_pair` gives two connected in-memory `ByteStream`s (the transport seam).
- `FakeAgent` speaks the agent protocol over any `ByteStream` for the sandbox lifecycle:
  handshake, ping, create, stop, start, remove, inspect and list. It mirrors the real agent's
  answers (idempotent create, `AlreadyExists` on a different spec, `SandboxNotFound` for unknown
  ids, `ProtocolError` on a version mismatch) and answers anything else with `BadRequest`.
  Its creates can take a realistic time: a start latency (fixed, or drawn per sandbox from a
  `LatencyDistribution` such as `LognormalLatency`) behind an engine that begins at most
  `engine_rate` creates per second; each create's timing is kept in `FakeAgent.starts`.
- `FakeAgentConnector` is a host `Connector` for a `FakeAgent`: pass it to `open_cluster`
  beside (or instead of) addresses.
- `end_sandbox(agent, sandbox_id, end)` ends a fake agent's sandbox on its own (an OOM, its
  init exiting, a deadline, its owner gone...) and pushes what a real agent reports of it.
- `open_fake_cluster` opens a `Cluster` over several fake agents, each through its connector,
  as `open_cluster` does over real hosts (heartbeats, reconnects and all).

Everything runs on anyio, so under asyncio and trio alike, and in virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._cluster import Cluster, running
from ._errors import BadRequest
from ._fake_agent import FakeAgent, FakeAgentConnector
from ._fake_ends import end_sandbox
from ._fake_gate import FakeStartGate
from ._fake_latency import FakeStart, LatencyDistribution, LognormalLatency, StartLatency
from ._memory import MemoryByteStream, memory_stream_pair
from ._options import ClusterOptions, make_scheduler
from ._scheduler import Scheduler

__all__ = [
    "FakeAgent",
    "FakeAgentConnector",
    "FakeCluster",
    "FakeStart",
    "FakeStartGate",
    "LatencyDistribution",
    "LognormalLatency",
    "MemoryByteStream",
    "StartLatency",
    "end_sandbox",
    "memory_stream_pair",
    "open_fake_cluster",
]

# The public face: these are documented (and pickled, and shown) as `rock_core.testing`'s.
for _public in (
    FakeAgent,
    FakeAgentConnector,
    FakeStart,
    FakeStartGate,
    LatencyDistribution,
    LognormalLatency,
    MemoryByteStream,
    end_sandbox,
    memory_stream_pair,
):
    _public.__module__ = __name__


class FakeCluster(Cluster):
    """A `Cluster` whose hosts are `FakeAgent`s; `agents` maps host ids to them."""

    def __init__(
        self, owner: str, scheduler: Scheduler, options: ClusterOptions | None = None
    ) -> None:
        super().__init__(owner, scheduler, options)
        self.agents: dict[str, FakeAgent] = {}


@asynccontextmanager
async def open_fake_cluster(
    n_hosts: int = 1,
    *,
    owner: str = "fake-owner",
    policy: str = "spread",
    max_queue: int = 10_000,
    max_starts: int = 8,
    **agent_kwargs: Any,
) -> AsyncIterator[FakeCluster]:
    """A cluster of `n_hosts` fake agents (host ids ``fake-0``, ``fake-1``, ...).

    `agent_kwargs` go to every `FakeAgent` (all but `host_id`). On exit the cluster deletes its
    sandboxes, then the connections close and the agents stop.
    """
    if n_hosts < 1:
        raise BadRequest(f"a fake cluster needs at least one host, got {n_hosts}")
    if "host_id" in agent_kwargs:
        raise BadRequest("fake hosts are named fake-0, fake-1, ...: do not pass host_id")
    cluster = FakeCluster(owner, make_scheduler(policy, max_queue, max_starts))
    agents = [FakeAgent(host_id=f"fake-{index}", **agent_kwargs) for index in range(n_hosts)]
    cluster.agents = {agent.host_id: agent for agent in agents}
    async with running(cluster, [FakeAgentConnector(agent) for agent in agents]):
        yield cluster
