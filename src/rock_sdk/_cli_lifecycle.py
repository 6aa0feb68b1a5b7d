"""`rock status|stop|restart|rm ID`: look at and drive any sandbox, whoever owns it.

Like `rock ps`, they use an embedded core reaching the cluster's hosts (`open_admin`) and find
the sandbox by id (or a unique prefix of one) on whichever host has it. Ownership does not
change: the owner's agent sees the engine's stop or start and tells its program, whose records
follow. Deadlines come from the host's deadline
record, which the agent that keeps them writes (see docs/lifecycle.md); the state history shown
is what the engine knows (created, latest start, latest stop): the full history lives in the
owner's core.

Rules:
- `stop`, `restart` and `rm` act on every id given, print each one done on stdout, say each
  failure on stderr, and exit 125 if any failed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
import typer

from rock_core import Cluster, RockError, locate_sandbox
from rock_core.protocol import (
    SandboxDeadlines,
    SandboxInfo,
    SandboxReply,
    StartSandbox,
    StopSandbox,
)

from ._cli_base import ExitCode, open_admin, resolve_ids, run_async, say_error
from ._cli_events import end_text, latest_end
from ._cli_format import duration, show_json, timestamp
from ._cli_network import network_text

_Action = Callable[[Cluster, str], Awaitable[None]]  # one sandbox's stop, restart or rm
Ids = Annotated[list[str], typer.Argument(metavar="ID...", help="sandbox ids or unique prefixes")]


def add_commands(app: typer.Typer) -> None:
    """Add `status`, `stop`, `restart` and `rm` to the `rock` app."""
    app.command("status")(status)
    app.command("stop")(stop)
    app.command("restart")(restart)
    app.command("rm")(rm)


def status(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(metavar="ID")],
    json: Annotated[bool, typer.Option("--json", help="the agent's report as JSON")] = False,
) -> None:
    """State, host, deadlines and history of a sandbox."""

    async def body() -> None:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, info = await locate_sandbox(cluster.hosts, sandbox_id)
            host = conn.welcome.host_id
            ended = info.state not in ("running", "paused")  # why, from its agent's log:
            end = await latest_end(cluster, host, sandbox_id) if ended else None
        if json:
            show_json({"host": host, "end": msgspec.to_builtins(end), **msgspec.to_builtins(info)})
            return
        lines = status_lines(info, host, time.time())
        for line in lines[:2] + ([f"{'ended':<12}{end_text(end)}"] if end else []) + lines[2:]:
            print(line)

    run_async(ctx, body)


def stop(
    ctx: typer.Context,
    ids: Ids,
    timeout: Annotated[float, typer.Option(help="seconds before SIGKILL")] = 10.0,
) -> None:
    """Stop sandboxes (their files are kept; restartable)."""
    run_async(ctx, lambda: _each(ids, "rock stop", _stop_one(timeout)))


def restart(ctx: typer.Context, ids: Ids) -> None:
    """Stop (if running) and start sandboxes again."""
    run_async(ctx, lambda: _each(ids, "rock restart", _restart_one))


def rm(ctx: typer.Context, ids: Ids) -> None:
    """Remove sandboxes (all owners)."""
    run_async(ctx, lambda: _each(ids, "rock rm", _rm_one))


def _stop_one(timeout: float) -> _Action:
    async def act(cluster: Cluster, sandbox_id: str) -> None:
        conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
        await conn.call(StopSandbox(sandbox_id=sandbox_id, timeout=timeout), SandboxReply)

    return act


async def _restart_one(cluster: Cluster, sandbox_id: str) -> None:
    conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
    await conn.call(StopSandbox(sandbox_id=sandbox_id, timeout=10.0), SandboxReply)
    await conn.call(StartSandbox(sandbox_id=sandbox_id), SandboxReply)


async def _rm_one(cluster: Cluster, sandbox_id: str) -> None:
    await cluster.remove_any(sandbox_id)


async def _each(ids: list[str], where: str, act: _Action) -> int:
    failed = 0
    async with open_admin() as cluster:
        for given in ids:
            try:
                (sandbox_id,) = await resolve_ids(cluster, [given])
                await act(cluster, sandbox_id)
                print(sandbox_id, flush=True)
            except RockError as exc:
                say_error(where, str(exc))
                failed += 1
    return ExitCode.FAILED if failed else ExitCode.OK


def status_lines(info: SandboxInfo, host: str, now: float) -> list[str]:
    """The human form of `rock status`."""
    rows = [
        ("sandbox", info.sandbox_id),
        ("state", info.state + (f" (exit code {info.exit_code})" if info.exit_code else "")),
        ("host", host),
        ("image", info.image),
        ("owner", info.owner),
        ("container", info.container_id[:12]),
        ("network", network_text(info.spec)),
    ]
    d = info.deadlines
    if d is None:
        rows.append(("deadlines", "unknown (made by an agent without timeouts)"))
    else:
        rows += _deadline_rows(d, now)
    lines = [f"{name:<12}{value}" for name, value in rows]
    lines.append("history     (as the engine knows it; the full one is in the owner's program)")
    steps = [(info.created_at, "created")]
    if d is not None and d.started_at:
        steps.append((d.started_at, "started"))
    if d is not None and d.stopped_at:
        why = f" ({d.stop_cause})" if d.stop_cause else ""
        steps.append((d.stopped_at, f"stopped{why}"))
    lines += [f"  {_when(at, now)}  {what}" for at, what in sorted(steps)]
    return lines


def _deadline_rows(d: SandboxDeadlines, now: float) -> list[tuple[str, str]]:
    idle = _limit(d.idle_timeout)
    if d.idle_timeout is not None:
        if d.in_use:
            idle += "; in use now"
        elif d.idle_at is not None:
            idle += f"; runs out {_when(d.idle_at, now)}"
        elif d.stopped_at is None and d.last_used is None:
            idle += "; its last use is not on record yet"
    lifetime = _limit(d.lifetime)
    if d.lifetime_at is not None:
        lifetime += f"; ends {_when(d.lifetime_at, now)}"
    auto_delete = (
        "off" if d.auto_delete_after is None else f"{duration(d.auto_delete_after)} after a stop"
    )
    if d.delete_at is not None:
        auto_delete += f"; due {_when(d.delete_at, now)}"
    return [
        ("idle", idle),
        ("lifetime", lifetime),
        ("on expire", d.on_expire),
        ("auto-delete", auto_delete),
    ]


def _limit(value: float | None) -> str:
    return "no limit" if value is None else duration(value)


def _when(at: float, now: float) -> str:
    delta = at - now
    ago = f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"
    return f"{timestamp(at, seconds=True)} ({ago})"
