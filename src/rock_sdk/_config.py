"""`SandboxConfig`: what a user asks for, in ROCK's terms, checked before anything starts."""

from __future__ import annotations

import math
import re
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from rock_core import BadRequest, NetworkPolicy
from rock_core.defaults import queue_timeout
from rock_core.protocol import SandboxId, SandboxSpec, validate

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: int | str, what: str = "memory") -> int:
    """Bytes from an int or a size such as "512m", "1g", "1.5GiB"."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest(f"{what} must be a size such as '1g' or a number of bytes, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if not match:
            raise BadRequest(f"{what} {value!r} is not a size such as '512m' or '1g'")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise BadRequest(f"{what} must be positive, got {value!r}")
    return size


class SandboxConfig(msgspec.Struct, kw_only=True):
    """A sandbox's image, limits and settings (names follow ROCK's `SandboxConfig`).

    Defaults are safe: 1 cpu, 1 GiB, at most 1024 processes, no network, no privileges.

    Timeouts (seconds; None or ``math.inf``: no limit) are kept by the host's agent, so they
    hold even when this program is gone: `idle_timeout` runs out after that long with no
    request naming the sandbox (commands, files, sessions, status, `keepalive()`); `lifetime`
    counts from its latest start; either then stops it (`on_expire="stop"`, files kept) or
    deletes it (``"delete"``). `auto_delete_after` deletes it that long after any stop.
    `pause_after` freezes it after that long with no use, and the next use thaws it
    (see docs/pause.md).

    `startup_timeout` bounds how long a create waits for room on a host before it raises
    `CapacityError`: unset, the cluster's `queue_timeout` (60 s by default); None (or
    ``math.inf``) waits without a limit.
    """

    image: str = "python:3.11"
    cpus: float = 1.0
    memory: int | str = "1g"
    pids: int = 1024
    disk: str = ""
    network: bool | NetworkPolicy = False  # off, on, or an egress allowlist (docs/network.md)
    env: dict[str, str] = {}
    workdir: str = ""
    user: str = ""
    labels: dict[str, str] = {}
    pull: Literal["missing", "never", "always"] = "missing"
    sandbox_id: str | None = None
    startup_timeout: float | UnsetType | None = UNSET
    idle_timeout: float | None = None
    lifetime: float | None = None
    on_expire: Literal["stop", "delete"] = "stop"
    auto_delete_after: float | None = None
    pause_after: float | None = None

    def to_spec(self) -> SandboxSpec:
        """The wire spec, every value checked by the protocol's schema (`BadRequest`)."""
        values = msgspec.structs.asdict(self)
        validate({"sandbox_id": values.pop("sandbox_id")}, _Extra, "sandbox config")
        del values["startup_timeout"]
        self.queue_timeout()
        values["memory"] = parse_size(self.memory)
        for name in ("idle_timeout", "lifetime", "auto_delete_after", "pause_after"):
            values[name] = _no_limit_as_none(values[name])
        return validate(values, SandboxSpec, "sandbox config")

    def queue_timeout(self) -> float | UnsetType | None:
        """`startup_timeout`, checked: UNSET (the cluster's), None (no limit) or seconds."""
        if self.startup_timeout is UNSET:
            return UNSET
        return queue_timeout(self.startup_timeout, "startup_timeout")


class _Extra(msgspec.Struct):
    """The config's fields that are not part of the spec (and are checked like it)."""

    sandbox_id: SandboxId | None = None


def _no_limit_as_none(value: object) -> object:
    """`math.inf` (no limit) is kept as None on the wire."""
    return None if value == math.inf else value
