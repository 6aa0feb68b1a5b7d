"""`rock status|stop|restart ID`: look at and drive any sandbox on this host, whoever owns it.

Like `rock rm` and `rock ps`, they use an embedded core with the local agent and reach the
sandbox by id. Ownership does not change: the owner's agent sees the engine's stop or start and
tells its program, whose records follow. Deadlines come from the host's deadline record, which
the agent that keeps them writes (see docs/lifecycle.md); the state history shown is what the
engine knows (created, latest start, latest stop): the full history lives in the owner's core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from rock_core import RockError, locate_sandbox, open_cluster
from rock_core.protocol import (
    SandboxDeadlines,
    SandboxInfo,
    SandboxReply,
    StartSandbox,
    StopSandbox,
)

from ._cli_format import duration, timestamp


def add_lifecycle_parsers(sub: Any) -> None:
    """Add `status`, `stop` and `restart` to the `rock` command's subparsers."""
    status = sub.add_parser("status", help="state, host, deadlines and history of a sandbox")
    status.add_argument("sandbox_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the agent's report as JSON")
    stop = sub.add_parser("stop", help="stop sandboxes (their files are kept; restartable)")
    stop.add_argument("ids", nargs="+", metavar="ID")
    stop.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    restart = sub.add_parser("restart", help="stop (if running) and start sandboxes again")
    restart.add_argument("ids", nargs="+", metavar="ID")


def lifecycle_handler(
    args: argparse.Namespace,
) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]] | None:
    """The coroutine function running `args`, if it is one of these subcommands."""
    return {"status": _status, "stop": _stop, "restart": _restart}.get(args.command)


async def _status(args: argparse.Namespace) -> int:
    async with open_cluster(["local"], admin=True) as cluster:
        conn, info = await locate_sandbox(cluster.hosts, args.sandbox_id)
        host = conn.welcome.host_id
    if args.json:
        print(json.dumps({"host": host, **msgspec.to_builtins(info)}, indent=2))
        return 0
    for line in status_lines(info, host, time.time()):
        print(line)
    return 0


async def _stop(args: argparse.Namespace) -> int:
    return await _each(args, "stop", stop=True, start=False)


async def _restart(args: argparse.Namespace) -> int:
    return await _each(args, "restart", stop=True, start=True)


async def _each(args: argparse.Namespace, verb: str, *, stop: bool, start: bool) -> int:
    failed = 0
    async with open_cluster(["local"], admin=True) as cluster:
        for sandbox_id in args.ids:
            try:
                conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
                if stop:
                    timeout = getattr(args, "timeout", 10.0)
                    request = StopSandbox(sandbox_id=sandbox_id, timeout=timeout)
                    await conn.call(request, SandboxReply)
                if start:
                    await conn.call(StartSandbox(sandbox_id=sandbox_id), SandboxReply)
                print(sandbox_id)
            except RockError as exc:
                print(f"rock {verb}: {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def status_lines(info: SandboxInfo, host: str, now: float) -> list[str]:
    """The human form of `rock status`."""
    rows = [
        ("sandbox", info.sandbox_id),
        ("state", info.state + (f" (exit code {info.exit_code})" if info.exit_code else "")),
        ("host", host),
        ("image", info.image),
        ("owner", info.owner),
        ("container", info.container_id[:12]),
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
