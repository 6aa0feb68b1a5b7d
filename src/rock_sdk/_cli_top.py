"""`rock top`: the live view of the cluster's hosts, sandboxes and warm pools.

Rules:
- On a terminal it runs the Textual app (`_top._app`), refreshing every ``--interval``; with
  ``--once``, ``--json`` or when stdout or stdin is not a terminal it prints one snapshot: the
  hosts, sandboxes and pools tables (a blank line between them), or with ``--json`` the
  snapshot as one JSON object (``hosts``, ``sandboxes``, ``pools``) from the same rows.
- It acts on the cluster of `open_admin` (any owner's sandboxes) and exits by the one
  exit-code table: 0, or 125 when the cluster cannot be reached or an option is wrong.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._cli_base import open_admin, run_async
from ._cli_format import parse_duration, show_json, show_rows, stdout_is_terminal
from ._top import HOST_COLUMNS, POOL_COLUMNS, SANDBOX_COLUMNS, Snapshot, collect


def add_commands(app: typer.Typer) -> None:
    """Add `top` to the `rock` app."""
    app.command("top")(top)


def top(
    ctx: typer.Context,
    interval: Annotated[
        str,
        typer.Option("--interval", "-n", metavar="DURATION", help="between refreshes: 2, 5s, 1m"),
    ] = "2",
    once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
    json: Annotated[bool, typer.Option("--json", help="one snapshot as a JSON object")] = False,
) -> None:
    """A live view of hosts, sandboxes and pools (keys: s sort, o owner, x stop, d delete)."""
    live = not (once or json) and stdout_is_terminal() and sys.stdin.isatty()

    async def body() -> None:
        every = parse_duration(interval, "--interval")
        async with open_admin() as cluster:
            if live:
                from ._top import top_app

                await top_app(cluster, interval=every).run_async()
                return
            snapshot = await collect(cluster)
        show_snapshot(snapshot, json=json)

    run_async(ctx, body)


def show_snapshot(snapshot: Snapshot, *, json: bool = False) -> None:
    """Print a snapshot as its three tables, or as one JSON object."""
    if json:
        show_json(snapshot)
        return
    show_rows(snapshot.hosts, HOST_COLUMNS)
    print()
    show_rows(snapshot.sandboxes, SANDBOX_COLUMNS)
    print()
    show_rows(snapshot.pools, POOL_COLUMNS)


__all__ = ["add_commands", "show_snapshot"]
