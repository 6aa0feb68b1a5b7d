"""The host's deadline record: what a sandbox's labels cannot hold about its deadlines.

Labels are fixed when a container is made, so timeouts changed while a sandbox exists, its last
use and why it last stopped are kept here: one JSON file in the agent's state folder
(`_images.state_dir`), shared by every agent process of the host and keyed by container id (a
new container of the same sandbox id never inherits an old record). An agent that restarts
restores deadlines from it; another agent process (`rock status`) reads it to show them.

The methods do file I/O: call them in a worker thread. Writes are serialised across processes
with a lock file and replace the file atomically, so readers never see half of it (`_state_file`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from rock_core.protocol import SandboxDeadlines

from . import _state_file
from ._deadlines import Timeouts
from ._images import state_dir

log = logging.getLogger("rock_agent.deadlines")

RECORD_FILE = "deadlines.json"


class StoredDeadlines(msgspec.Struct, kw_only=True):
    """One sandbox's entry: its timeouts now (None: no limit), last use and latest stop cause."""

    sandbox_id: str
    idle_timeout: float | None = None
    lifetime: float | None = None
    on_expire: str = "stop"
    auto_delete_after: float | None = None
    last_used: float | None = None
    in_use: bool = False
    stop_cause: str = ""

    @classmethod
    def of(cls, sandbox_id: str, view: SandboxDeadlines) -> StoredDeadlines:
        """The entry for a sandbox's deadlines as they stand."""
        return cls(
            sandbox_id=sandbox_id,
            idle_timeout=view.idle_timeout,
            lifetime=view.lifetime,
            on_expire=view.on_expire,
            auto_delete_after=view.auto_delete_after,
            last_used=view.last_used,
            in_use=view.in_use,
            stop_cause=view.stop_cause,
        )

    def timeouts(self) -> Timeouts:
        """The timeouts the entry holds."""
        return Timeouts(
            idle=self.idle_timeout,
            lifetime=self.lifetime,
            on_expire=self.on_expire,
            auto_delete=self.auto_delete_after,
        )


class _Record(msgspec.Struct, kw_only=True):
    version: int = 1
    sandboxes: dict[str, StoredDeadlines] = {}


class DeadlineStore:
    """Read and update the host's deadline record."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder

    @property
    def path(self) -> Path:
        """The record's file."""
        return (self._folder or state_dir()) / RECORD_FILE

    def load(self) -> dict[str, StoredDeadlines]:
        """Container id -> entry; empty when there is no record (or it cannot be read)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read the deadline record %s: %s", self.path, exc)
            return {}
        try:
            return msgspec.json.decode(raw, type=_Record).sandboxes
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring an unreadable deadline record %s: %s", self.path, exc)
            return {}

    def update(self, entries: Mapping[str, StoredDeadlines], forget: Iterable[str] = ()) -> None:
        """Write `entries` (by container id) and drop the `forget` ones; others are kept."""

        def content() -> bytes:
            sandboxes = self.load()
            sandboxes.update(entries)
            for container_id in forget:
                sandboxes.pop(container_id, None)
            return msgspec.json.encode(_Record(sandboxes=sandboxes))

        _state_file.rewrite(self.path, content)


__all__ = ["DeadlineStore", "StoredDeadlines"]
