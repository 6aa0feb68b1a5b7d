"""The record of when each image of a host was last used, shared by every agent process.

Rules:
- The record is a small JSON file (`USAGE_FILE`) in the agent's state folder (`state_dir`):
  image id -> unix time of its last recorded use (a sandbox created from it, a warm, a commit).
- Writes are serialised across processes with a lock file and replace the file atomically
  (`_state_file`); a failed write is logged, never raised (the record only orders prunes).
- A sandbox start records its image's use at most once per `NOTE_INTERVAL` per agent.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import anyio

from rock_core import RockError

from . import _state_file
from ._runtime import ContainerRuntime

log = logging.getLogger("rock_agent.images")

STATE_DIR_ENV = "ROCK_AGENT_STATE_DIR"
USAGE_FILE = "image-usage.json"
NOTE_INTERVAL = 60.0  # a sandbox start records its image's use at most this often per agent


def state_dir() -> Path:
    """The agent's state folder: ``$ROCK_AGENT_STATE_DIR``, else a per-user default."""
    custom = os.environ.get(STATE_DIR_ENV)
    if custom:
        return Path(custom)
    if os.geteuid() == 0:
        return Path("/var/lib/rock-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rock-agent"


class ImageUsage:
    """When each image (by id) was last used, in a JSON file every agent of the host shares.

    The methods do file I/O: call them in a worker thread. Writes are serialised across
    processes with a lock file and replace the file atomically, so readers never see half of it.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._noted: dict[str, float] = {}

    @property
    def path(self) -> Path:
        """The record's file."""
        return (self._folder or state_dir()) / USAGE_FILE

    def due(self, reference: str, now: float) -> bool:
        """True when a use of `reference` should be written (throttled per reference)."""
        last = self._noted.get(reference)
        if last is not None and now - last < NOTE_INTERVAL:
            return False
        self._noted[reference] = now
        return True

    def load(self) -> dict[str, float]:
        """Image id -> unix time of its last recorded use; empty if there is no record."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring an unreadable image-usage record %s: %s", self.path, exc)
            return {}
        used = raw.get("last_used") if isinstance(raw, dict) else None
        if not isinstance(used, dict):
            return {}
        return {k: float(v) for k, v in used.items() if isinstance(v, int | float)}

    def update(self, used: dict[str, float], forget: Iterable[str] = ()) -> None:
        """Record uses (keeping the newer time of each) and drop forgotten ids."""

        def content() -> bytes:
            record = self.load()
            for image_id, when in used.items():
                record[image_id] = max(when, record.get(image_id, 0.0))
            for image_id in forget:
                record.pop(image_id, None)
            return json.dumps({"version": 1, "last_used": record}, indent=0).encode()

        _state_file.rewrite(self.path, content)


class _Server(Protocol):
    runtime: ContainerRuntime
    image_usage: ImageUsage


async def record(usage: ImageUsage, used: dict[str, float], forget: Iterable[str] = ()) -> None:
    """Write to the usage record; a failure is logged, never raised (it only orders prunes)."""
    try:
        await anyio.to_thread.run_sync(usage.update, used, list(forget))
    except OSError as exc:
        log.warning("cannot write the image-usage record %s: %s", usage.path, exc)


async def note_use(server: _Server, reference: str) -> None:
    """A sandbox was created from `reference`: record the use (at most once a minute)."""
    now = time.time()
    if not server.image_usage.due(reference, time.monotonic()):
        return
    try:
        image_id = (await server.runtime.inspect_image(reference)).image_id
    except RockError as exc:
        log.warning("cannot record the use of image %s: %s", reference, exc)
        return
    await record(server.image_usage, {image_id: now})


__all__ = [
    "NOTE_INTERVAL",
    "STATE_DIR_ENV",
    "USAGE_FILE",
    "ImageUsage",
    "note_use",
    "record",
    "state_dir",
]
