"""The values that cross the agent's runtime seam (`_runtime`): typed, engine-free records.

Rules:
- No engine objects, no engine JSON, no `Any`; times are unix seconds (0.0: not known).
- `_runtime` re-exports every name: implementations and the agent import them from there.
"""

from __future__ import annotations

from typing import Literal

import msgspec

PullPolicy = Literal["missing", "never", "always"]
EventAction = Literal["start", "die", "destroy", "pause", "unpause"]
OutputStream = Literal["stdout", "stderr"]


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """The engine host's capacity."""

    cpus: float
    memory: int  # bytes


class ContainerDetail(msgspec.Struct, frozen=True, kw_only=True):
    """One sandbox's container as the engine describes it now (its full inspect record)."""

    sandbox_id: str
    container_id: str
    image: str  # the reference it was made from
    image_id: str  # the id of the image it runs
    status: str  # the engine's word: "running", "exited", "created", "paused"...
    running: bool
    pid: int  # its main process on the engine's host; 0 when not running
    started_at: float
    finished_at: float
    exit_code: int | None
    oom_killed: bool
    ip_address: str  # on the sandbox's network; "" without one
    labels: dict[str, str] = {}


class ContainerSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Any container of the engine (any owner, any state), as much as image use needs."""

    image_id: str
    running: bool
    created: float


class ImageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One image of the engine."""

    image_id: str
    tags: list[str] = []  # as the engine lists them ("<none>:<none>" included)
    size: int = 0
    shared_size: int = 0  # bytes shared with other images; 0 if not known
    created: float = 0.0
    containers: int = 0  # containers using it, as the engine counts them; 0 if not known
    labels: dict[str, str] = {}


class DiskUsage(msgspec.Struct, frozen=True, kw_only=True):
    """The engine's disk-usage report: its top-level images and the layers' total size."""

    images: list[ImageRecord] = []
    layers_size: int = 0


class BuildOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A finished image build: the image's id and the last lines of the build's output."""

    image_id: str
    output: list[str] = []


class StatsReading(msgspec.Struct, frozen=True, kw_only=True):
    """One resource-use reading of a running sandbox, with the reading before it.

    CPU counters are nanoseconds (the sandbox's, and the host's in `system`); `memory_cache`
    is the page cache the kernel can drop.
    """

    read_at: float = 0.0
    preread_at: float = 0.0
    cpu_total: int = 0
    pre_cpu_total: int = 0
    system: int = 0
    pre_system: int = 0
    online_cpus: int = 1
    memory_usage: int = 0
    memory_cache: int = 0
    memory_limit: int = 0
    memory_peak: int = 0
    pids: int = 0
    pids_limit: int = 0


class EngineEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A start, stop ("die"), removal ("destroy"), "pause" or "unpause" of one of this host's
    containers."""

    action: EventAction
    sandbox_id: str
    container_id: str
    owner: str  # the owner label
    owner_uid: int  # the owner's uid (the runtime's `uid` if the labels name none)
    time: float
    exit_code: int | None = None  # "die" only


class OutputChunk(msgspec.Struct, frozen=True):
    """A piece of a process's output."""

    stream: OutputStream
    data: bytes


class ProcessState(msgspec.Struct, frozen=True):
    """A process as the engine sees it now: its host pid (0 if it never started), its exit
    code once ended, and whether it runs."""

    pid: int
    exit_code: int | None
    running: bool


__all__ = [
    "BuildOutcome",
    "ContainerDetail",
    "ContainerSummary",
    "DiskUsage",
    "EngineEvent",
    "EventAction",
    "ImageRecord",
    "OutputChunk",
    "OutputStream",
    "ProcessState",
    "PullPolicy",
    "Resources",
    "StatsReading",
]
