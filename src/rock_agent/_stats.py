"""Live resource use of a sandbox: the engine's stats reading turned into `SandboxStats`.

Rules:
- One reading per request, from the engine's stats API with ``stream=false``: the engine takes
  two samples about a second apart, so `cpu_percent` covers that interval (100 = one full cpu,
  as `docker stats` shows it) and the request takes about a second.
- `memory` leaves out the page cache the kernel can drop (``inactive_file``), like `docker stats`;
  cgroup v1 and v2 readings are both understood.
- Only running sandboxes have stats: a stopped one is a `BadRequest` naming its state.
- The engine's reading is typed by the runtime (`StatsReading`); the numbers are made here.
"""

from __future__ import annotations

import time
from typing import Protocol

from rock_core.protocol import ReadStats, Reply, SandboxStats, StatsReply

from ._runtime import ContainerRuntime, StatsReading
from ._start_failure import not_running


class _Server(Protocol):
    runtime: ContainerRuntime


def sandbox_stats(sandbox_id: str, reading: StatsReading, now: float) -> SandboxStats:
    """`SandboxStats` from one stats reading of the runtime."""
    cpu_delta = reading.cpu_total - reading.pre_cpu_total
    system_delta = reading.system - reading.pre_system
    percent = 0.0
    if reading.pre_system and system_delta > 0 and cpu_delta >= 0:
        percent = cpu_delta / system_delta * reading.online_cpus * 100.0
    read, preread = reading.read_at, reading.preread_at
    interval = read - preread if read and preread else 0.0
    used, cache = reading.memory_usage, reading.memory_cache
    return SandboxStats(
        sandbox_id=sandbox_id,
        time=read or now,
        cpu_percent=round(percent, 3),
        cpu_seconds=reading.cpu_total / 1e9,
        interval=round(interval, 6),
        online_cpus=reading.online_cpus,
        memory=used - cache if cache < used else used,
        memory_limit=reading.memory_limit,
        memory_peak=reading.memory_peak,
        pids=reading.pids,
        pids_limit=reading.pids_limit,
    )


async def read_stats(server: _Server, conn: object, req: ReadStats) -> Reply:
    """Handler of `ReadStats`."""
    detail = await server.runtime.container(req.sandbox_id)
    if not detail.running:
        raise not_running(
            req.sandbox_id, detail.status, "only a running sandbox has live resource use"
        )
    reading = await server.runtime.stats(req.sandbox_id)
    return StatsReply(id=req.id, stats=sandbox_stats(req.sandbox_id, reading, time.time()))


__all__ = ["read_stats", "sandbox_stats"]
