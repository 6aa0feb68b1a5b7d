"""`rock logs ID`: what a sandbox's container printed, as `docker logs` shows it.

Rules:
- What the container wrote to stdout goes to stdout and what it wrote to stderr to stderr,
  exact bytes, in order; nothing else is printed on either but a failure, said once on stderr.
- It streams, so it has no ``--json``: `--timestamps` prefixes each line with its time
  (RFC 3339, UTC) instead.
- `--since` takes a duration before now (``10m``, ``1.5h``, ``30s``), a unix time (a bare
  number, as docker reads it) or an ISO 8601 date and time (local time unless it names its
  zone). `--tail` takes a number of lines or ``all``.
- `--follow` goes on until the sandbox stops (exit 0) or Ctrl-C (exit 130); a reader that
  leaves (``| head``) ends it with exit 0. An unknown id is exit 125.
"""

from __future__ import annotations

import datetime
import re
import sys
import time
from typing import Annotated

import typer

from rock_core import BadRequest, sandbox_logs

from ._cli_base import Interrupts, emit, fail, open_admin, resolve_ids, run_interruptible
from ._cli_format import parse_duration

_UNIX_TIME = re.compile(r"^\s*\d+(\.\d+)?\s*$")


def add_commands(app: typer.Typer) -> None:
    """Add `logs` to the `rock` app."""
    app.command("logs")(logs)


def logs(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(metavar="ID", help="a sandbox id or unique prefix")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="go on with new output until it stops")
    ] = False,
    tail: Annotated[
        str, typer.Option("--tail", "-n", metavar="N", help="only the last N lines, or 'all'")
    ] = "all",
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="only lines since a duration ago (10m), a unix time or an ISO date and time",
        ),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="start each line with its time")
    ] = False,
) -> None:
    """Print what a sandbox's container printed (stdout to stdout, stderr to stderr)."""
    try:
        lines = parse_tail(tail)
        start = None if since is None else parse_since(since, time.time())
    except BadRequest as exc:
        raise fail(ctx, str(exc)) from None

    async def body(interrupts: Interrupts) -> int:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            chunks = sandbox_logs(
                cluster.hosts,
                sandbox_id,
                follow=follow,
                tail=lines,
                since=start,
                timestamps=timestamps,
            )
            with interrupts.cancels():
                try:
                    async for chunk in chunks:
                        out = sys.stdout if chunk.stream == "stdout" else sys.stderr
                        if not emit(out.buffer, chunk.data):
                            break  # the reader left: what it read is all it wanted
                finally:
                    await chunks.aclose()
        return 0

    run_interruptible(ctx, body)


def parse_tail(text: str) -> int | None:
    """`--tail`: a number of lines >= 0, or None for ``all``; `BadRequest` otherwise."""
    if text.strip().lower() == "all":
        return None
    try:
        lines = int(text)
    except ValueError:
        lines = -1
    if lines < 0:
        raise BadRequest(f"--tail {text!r} is not a number of lines (or 'all')")
    return lines


def parse_since(text: str, now: float) -> float:
    """`--since` as a unix time: a duration before `now`, a unix time or an ISO date."""
    if _UNIX_TIME.match(text):
        return float(text)
    try:
        return max(0.0, now - parse_duration(text, "--since"))
    except BadRequest:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(
            f"--since {text!r} is not a duration (10m), a unix time or an ISO date and time"
            " (2024-05-01T12:00:00Z)"
        ) from None
    return max(0.0, when.timestamp())  # a naive one is local time, as docker reads it


__all__ = ["add_commands", "parse_since", "parse_tail"]
