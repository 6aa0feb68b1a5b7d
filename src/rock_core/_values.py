"""Values the wire messages carry: specs, sandbox views, results, images, stats, deadlines.

Rules:
- Plain `msgspec.Struct`s with no tag: they travel only inside messages (`_messages`,
  `_messages_host`), never as a frame of their own, so they hold no request id.
- Constraints on what a client may send live in `_schema` (the annotated types); values an agent
  reports are not constrained, so an older or newer agent's report still decodes.
- Schema evolution: new fields get defaults, field names never change meaning.
"""

from __future__ import annotations

import math

import msgspec

from ._network import NetworkPolicy
from ._schema import (
    AbsPathOrEmpty,
    Cpus,
    DiskSize,
    Env,
    ExpirePolicy,
    Image,
    Labels,
    Memory,
    Pids,
    PullPolicy,
    Seconds,
    ShortText,
)


class SandboxSpec(msgspec.Struct, kw_only=True, frozen=True):
    """Everything an agent needs to create a sandbox's container (constraints: `_schema`)."""

    image: Image
    cpus: Cpus = 1.0
    memory: Memory = 1 << 30  # bytes; swap is capped at the same value
    pids: Pids = 1024
    disk: DiskSize = ""  # engine storage-opt size, e.g. "10G"; empty = engine default
    network: bool | NetworkPolicy = False  # off, fully on, or an egress allowlist
    env: Env = {}
    workdir: AbsPathOrEmpty = ""
    labels: Labels = {}
    pull: PullPolicy = "missing"
    user: ShortText = ""
    # Lifetime, enforced by the agent (see `SandboxDeadlines`); None: no limit.
    idle_timeout: Seconds | None = None  # seconds without a request naming the sandbox
    lifetime: Seconds | None = None  # seconds from its latest start
    on_expire: ExpirePolicy = "stop"  # what expiry does: "stop" (files kept) or "delete"
    auto_delete_after: Seconds | None = None  # seconds after any stop
    pause_after: Seconds | None = None  # seconds without a use, then frozen (resumed on use)


class SandboxInfo(msgspec.Struct, kw_only=True):
    """An agent's view of one sandbox (one container)."""

    sandbox_id: str
    container_id: str
    image: str
    state: str  # the engine's container state: created, running, exited, ...
    owner: str
    created_at: float
    labels: dict[str, str] = {}
    exit_code: int | None = None
    sessions: list[str] = []
    spec: SandboxSpec | None = None  # as created; None for containers from older agents
    deadlines: SandboxDeadlines | None = None  # None from agents without timeouts
    owner_uid: int = -1  # the user of the owner's connections; -1 from older agents


class CommandResult(msgspec.Struct, kw_only=True):
    """The outcome of a command run in a session."""

    output: bytes
    exit_code: int | None
    timed_out: bool = False
    idle_timed_out: bool = False
    truncated: bool = False
    total_bytes: int = 0
    output_path: str = ""  # full output inside the sandbox, when truncated
    session_closed: bool = False
    duration: float = 0.0
    oom_killed: bool = False  # the kernel killed a process of the sandbox for memory meanwhile


class ExecResult(msgspec.Struct, kw_only=True):
    """The outcome of a one-off command: stdout and stderr apart."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0
    oom_killed: bool = False  # the kernel killed a process of the sandbox for memory meanwhile
    truncated: bool = False  # stdout or stderr was longer than the agent keeps (the rest dropped)


class FileStat(msgspec.Struct, kw_only=True):
    """What a download or upload moved."""

    path: str
    size: int
    is_dir: bool = False
    skipped: list[str] = []  # entries that could not be copied (device files, ...), and why


class ImageInfo(msgspec.Struct, kw_only=True):
    """One image on a host, as the engine reports it plus the agent's record of its use."""

    image_id: str
    tags: list[str] = []
    size: int = 0  # bytes, all its layers
    shared_size: int = 0  # bytes of `size` that other images use too
    created: float = 0.0  # unix time
    last_used: float = 0.0  # unix time; see docs/using-sandboxes.md for how it is derived
    containers: int = 0  # containers (any state) created from it


class ImageReport(msgspec.Struct, kw_only=True):
    """The images of one host and how much disk they take."""

    images: list[ImageInfo]
    total_size: int = 0  # bytes all image layers take on disk (shared layers counted once)
    disk_size: int = 0  # capacity of the file system holding them; 0 if unknown


class PruneResult(msgspec.Struct, kw_only=True):
    """What a prune removed, and the images' total size against its limit."""

    limit: int  # bytes the images may take
    total_before: int  # bytes all images took before
    total_after: int  # measured after (estimated for a dry run)
    freed: int
    removed: list[ImageInfo] = []
    errors: list[str] = []  # images that could not be removed, and why
    dry_run: bool = False


class SandboxStats(msgspec.Struct, kw_only=True):
    """Live resource use of one sandbox, from the engine's stats API."""

    sandbox_id: str
    time: float  # unix time of the reading
    cpu_percent: float  # 100 = one full cpu, over `interval`
    cpu_seconds: float  # cpu time used since the sandbox started
    interval: float  # seconds between the two readings `cpu_percent` compares
    online_cpus: int = 0
    memory: int = 0  # bytes in use, reclaimable page cache not counted
    memory_limit: int = 0
    memory_peak: int = 0
    pids: int = 0
    pids_limit: int = 0  # 0: no limit


# ---------------------------------------------------------------------------- timeouts

NO_LIMIT = math.inf
"""In `SetTimeouts` (and the SDK's `set_timeouts`): remove that limit. None there leaves it."""
EXPIRE_POLICIES = ("stop", "delete")


def as_limit(value: float | None) -> float | None:
    """A validated time limit as kept: seconds, or None for no limit (None or infinity)."""
    return None if value is None or value == math.inf else float(value)


class SandboxDeadlines(msgspec.Struct, kw_only=True):
    """A sandbox's timeouts as they stand now, and when each runs out (unix times; None: never).

    `idle_at` is when the idle timeout runs out if nothing uses the sandbox before; while a
    request naming it is in flight (`in_use`) it cannot run out. `lifetime_at` counts from the
    latest start, `delete_at` (auto-delete) from the latest stop.
    """

    idle_timeout: float | None = None
    lifetime: float | None = None
    on_expire: str = "stop"
    auto_delete_after: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None  # set while it is stopped
    last_used: float | None = None  # None: not known here (another agent process tracks it)
    in_use: bool = False
    idle_at: float | None = None
    lifetime_at: float | None = None
    delete_at: float | None = None
    stop_cause: str = ""  # why it last stopped, where known: "idle", "lifetime", "request"
