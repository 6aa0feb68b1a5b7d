"""`SandboxConfig`: what a user asks for, in ROCK's terms, checked before anything starts."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from rock_core._errors import BadRequest
from rock_core._protocol import SandboxSpec, check_limit, check_policy

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: int | str, what: str = "memory") -> int:
    """Bytes from an int or a size such as "512m", "1g", "1.5GiB"."""
    if isinstance(value, bool):
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
    """

    image: str = "python:3.11"
    cpus: float = 1.0
    memory: int | str = "1g"
    pids: int = 1024
    disk: str = ""
    network: bool = False
    env: dict[str, str] = {}
    workdir: str = ""
    user: str = ""
    labels: dict[str, str] = {}
    pull: Literal["missing", "never", "always"] = "missing"
    sandbox_id: str | None = None
    startup_timeout: float | None = None
    idle_timeout: float | None = None
    lifetime: float | None = None
    on_expire: Literal["stop", "delete"] = "stop"
    auto_delete_after: float | None = None

    def to_spec(self) -> SandboxSpec:
        """The wire spec, with every value checked."""
        if not self.image:
            raise BadRequest("a sandbox needs an image")
        if not (self.cpus > 0):
            raise BadRequest(f"cpus must be positive, got {self.cpus!r}")
        if self.pids <= 0:
            raise BadRequest(f"pids must be positive, got {self.pids!r}")
        if self.pull not in ("missing", "never", "always"):
            raise BadRequest(f"pull must be 'missing', 'never' or 'always', got {self.pull!r}")
        return SandboxSpec(
            image=self.image,
            cpus=float(self.cpus),
            memory=parse_size(self.memory),
            pids=self.pids,
            disk=self.disk,
            network=self.network,
            env=dict(self.env),
            workdir=self.workdir,
            labels=dict(self.labels),
            pull=self.pull,
            user=self.user,
            idle_timeout=check_limit("idle_timeout", self.idle_timeout),
            lifetime=check_limit("lifetime", self.lifetime),
            on_expire=check_policy(self.on_expire),
            auto_delete_after=check_limit("auto_delete_after", self.auto_delete_after),
        )
