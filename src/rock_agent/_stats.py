"""Live resource use of a sandbox: the engine's stats reading turned into `SandboxStats`.

Rules:
- One reading per request, from the engine's stats API with ``stream=false``: the engine takes
  two samples about a second apart, so `cpu_percent` covers that interval (100 = one full cpu,
  as `docker stats` shows it) and the request takes about a second.
- `memory` leaves out the page cache the kernel can drop (``inactive_file``), like `docker stats`;
  cgroup v1 and v2 readings are both understood.
- Only running sandboxes have stats: a stopped one is a `BadRequest` naming its state.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol

from rock_core._errors import BadRequest
from rock_core._protocol import ReadStats, Reply, SandboxStats, StatsReply

from ._docker import DockerRuntime


class _Server(Protocol):
    runtime: DockerRuntime


def engine_time(text: object) -> float:
    """Unix time from the engine's RFC 3339 timestamps; 0.0 for its zero time or garbage."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def parse_stats(sandbox_id: str, reading: dict[str, Any], now: float) -> SandboxStats:
    """`SandboxStats` from one stats reading of the engine."""
    cpu = reading.get("cpu_stats") or {}
    pre = reading.get("precpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    total = int(usage.get("total_usage") or 0)
    pre_total = int((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    system = int(cpu.get("system_cpu_usage") or 0)
    pre_system = int(pre.get("system_cpu_usage") or 0)
    online = int(cpu.get("online_cpus") or len(usage.get("percpu_usage") or []) or 1)
    cpu_delta, system_delta = total - pre_total, system - pre_system
    percent = 0.0
    if pre_system and system_delta > 0 and cpu_delta >= 0:
        percent = cpu_delta / system_delta * online * 100.0
    read, preread = engine_time(reading.get("read")), engine_time(reading.get("preread"))
    interval = read - preread if read and preread else 0.0

    memory = reading.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    used = int(memory.get("usage") or 0)
    # cgroup v1 names it total_inactive_file, v2 inactive_file.
    cache = int(detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0)
    pids = reading.get("pids_stats") or {}
    return SandboxStats(
        sandbox_id=sandbox_id,
        time=read or now,
        cpu_percent=round(percent, 3),
        cpu_seconds=total / 1e9,
        interval=round(interval, 6),
        online_cpus=online,
        memory=used - cache if cache < used else used,
        memory_limit=int(memory.get("limit") or 0),
        memory_peak=int(memory.get("max_usage") or 0),
        pids=int(pids.get("current") or 0),
        pids_limit=int(pids.get("limit") or 0),
    )


async def read_stats(server: _Server, conn: object, req: ReadStats) -> Reply:
    """Handler of `ReadStats`."""
    attrs = await server.runtime.inspect_container(req.sandbox_id)
    state = attrs.get("State") or {}
    if not state.get("Running"):
        raise BadRequest(
            f"sandbox {req.sandbox_id} is not running ({state.get('Status', 'unknown')}); "
            "only a running sandbox has live resource use",
            sandbox_id=req.sandbox_id,
        )
    reading = await server.runtime.stats(req.sandbox_id)
    return StatsReply(id=req.id, stats=parse_stats(req.sandbox_id, reading, time.time()))
