"""`rock events`: why sandboxes ended, as the agents of the reachable hosts remember it.

Rules:
- The command line owns no sandbox, so it cannot follow a cluster's own records (a program does
  that with ``cluster.events()``). It reads what every agent keeps: a short log, in the
  agent's memory, of the latest ends it reported (`rock_core.read_ends`: which sandbox, whose,
  stopped or deleted, the `EndReason`, the init's exit code, when). An agent restarted since
  has forgotten the ends before its start; starts are not in the log.
- `rock events` prints the ends remembered (oldest first); ``--follow`` then asks again every
  `POLL` seconds and prints what is new, until Ctrl-C (exit 130). ``--host ID`` reads only
  those hosts. The table and ``--json`` (one `EndRow` per line) are the same rows.
- A host that cannot be read (an unknown id, an agent without the capability "end-reasons")
  fails the command (exit 125), naming it.
- `rock status ID` shows the latest end of its sandbox from the same log (`latest_end`).
"""

from __future__ import annotations

from typing import Annotated

import anyio
import msgspec
import typer

from rock_core import BadRequest, Cluster, read_ends
from rock_core.protocol import SandboxEnd

from ._cli_base import open_admin, run_async
from ._cli_format import Column, show_rows, timestamp
from ._cli_host import Host

POLL = 1.0  # seconds between two reads of the agents' logs with --follow


class EndRow(msgspec.Struct, kw_only=True):
    """One end of one sandbox, as `rock events` shows it (``--json``: one object per line)."""

    at: float
    host: str
    sandbox: str
    owner: str
    state: str
    end: str
    exit_code: int | None
    reason: str


END_COLUMNS: list[Column[EndRow]] = [
    Column("TIME", lambda r: timestamp(r.at, seconds=True)),
    Column("HOST", lambda r: r.host),
    Column("SANDBOX", lambda r: r.sandbox),
    Column("STATE", lambda r: r.state),
    Column("END", lambda r: r.end or "-"),
    Column("EXIT", lambda r: "-" if r.exit_code is None else str(r.exit_code)),
    Column("REASON", lambda r: r.reason),
]


def end_rows(ends: dict[str, list[SandboxEnd]]) -> list[EndRow]:
    """Every host's ends as rows, oldest first."""
    rows = [
        EndRow(
            at=end.at,
            host=host,
            sandbox=end.sandbox_id,
            owner=end.owner,
            state=end.state,
            end=end.end,
            exit_code=end.exit_code,
            reason=end.reason,
        )
        for host, listed in ends.items()
        for end in listed
    ]
    return sorted(rows, key=lambda r: (r.at, r.host, r.sandbox))


def events(
    ctx: typer.Context,
    host: Host = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new ends until Ctrl-C")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="one JSON object per end")] = False,
) -> None:
    """Why sandboxes ended (user, idle, lifetime, oom, init_exited...; see docs/events.md)."""

    async def body() -> None:
        async with open_admin() as cluster:
            since = 0.0
            shown = False
            while True:
                rows = end_rows(await read_ends(cluster, host, since=since))
                if rows or not shown:
                    show_rows(rows, END_COLUMNS, json=json)
                    shown = True
                since = max([since, *(row.at for row in rows)])
                if not follow:
                    return
                await anyio.sleep(POLL)

    run_async(ctx, body)


async def latest_end(cluster: Cluster, host: str, sandbox_id: str) -> SandboxEnd | None:
    """The latest end its agent remembers of a sandbox (None if none, or an older agent)."""
    try:
        ends = (await read_ends(cluster, [host], of=sandbox_id))[host]
    except BadRequest:
        return None  # an agent without "end-reasons"
    return ends[-1] if ends else None


def end_text(end: SandboxEnd) -> str:
    """How `rock status` says an end: reason, exit code, time, and the reason in words."""
    code = "" if end.exit_code is None else f" (exit code {end.exit_code})"
    words = f": {end.reason}" if end.reason else ""
    return f"{end.end or 'removed'}{code} at {timestamp(end.at, seconds=True)}{words}"


def add_commands(app: typer.Typer) -> None:
    """Add `events` to the `rock` app."""
    app.command("events")(events)


__all__ = ["END_COLUMNS", "EndRow", "add_commands", "end_rows", "end_text", "latest_end"]
