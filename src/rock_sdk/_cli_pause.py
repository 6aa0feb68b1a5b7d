"""`rock pause|resume ID...`: freeze sandboxes where they stand, or thaw them.

Like `rock stop`, they reach any sandbox on this host by id (or a unique prefix of one),
whoever owns it, through an administrator's connection. The owner's agent learns of the pause
from the engine's events and resumes the sandbox on its next use. See docs/pause.md.

Rules:
- Each acts on every id given, prints each one done on stdout, says each failure on stderr,
  and exits 125 if any failed. Pausing a paused sandbox (or resuming a running one) is done,
  not a failure; one that does not run is a failure.
"""

from __future__ import annotations

import typer

from rock_core import Cluster, locate_sandbox

from ._cli_base import run_async
from ._cli_lifecycle import Ids, _each
from ._pausing import set_paused


def add_commands(app: typer.Typer) -> None:
    """Add `pause` and `resume` to the `rock` app."""
    app.command("pause")(pause)
    app.command("resume")(resume)


def pause(ctx: typer.Context, ids: Ids) -> None:
    """Pause sandboxes: freeze their processes (memory kept; any use resumes them)."""
    run_async(ctx, lambda: _each(ids, "rock pause", _pause_one))


def resume(ctx: typer.Context, ids: Ids) -> None:
    """Resume paused sandboxes."""
    run_async(ctx, lambda: _each(ids, "rock resume", _resume_one))


async def _pause_one(cluster: Cluster, sandbox_id: str) -> None:
    conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
    await set_paused(conn, sandbox_id, True)


async def _resume_one(cluster: Cluster, sandbox_id: str) -> None:
    conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
    await set_paused(conn, sandbox_id, False)


__all__ = ["add_commands"]
