"""`rock images ...` and `rock port ...`: images on this host, and a port of any sandbox here.

Both use an embedded core with the local agent, like `rock ps`: `rock port` reaches a sandbox by
id whoever owns it, and only carries bytes, so the sandbox's owner and lifetime do not change.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from rock_core import (
    RockError,
    SandboxNotFound,
    list_images,
    locate_sandbox,
    open_cluster,
    open_port_forward,
    prune_images,
    warm_image,
)
from rock_core.protocol import ImageInfo, InspectSandbox, SandboxReply

from ._cli_format import print_table, size_text, timestamp
from ._config import parse_size

DEFAULT_PRUNE_LIMIT = "50%"
WATCH_INTERVAL = 2.0  # seconds between checks that a forwarded sandbox still runs


def add_host_parsers(sub: Any) -> None:
    """Add `images` and `port` to the `rock` command's subparsers."""
    images = sub.add_parser("images", help="list, warm or prune the images on this host")
    what = images.add_subparsers(dest="images_command", required=True)
    what.add_parser("list", help="images with size, creation and last use")
    warm = what.add_parser("warm", help="make an image present (a no-op when it is)")
    warm.add_argument("image")
    prune = what.add_parser(
        "prune", help="remove least recently used unused images while images take too much"
    )
    prune.add_argument(
        "--max-size",
        default=DEFAULT_PRUNE_LIMIT,
        metavar="SIZE",
        help="bytes images may take ('20g') or a percent of the disk holding them ('50%%'); "
        f"default {DEFAULT_PRUNE_LIMIT}",
    )
    prune.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only images whose every tag matches this pattern ('scratch/*'); repeatable",
    )
    prune.add_argument("--dry-run", action="store_true", help="show what would be removed")

    port = sub.add_parser("port", help="forward a local port to a port in a sandbox until Ctrl-C")
    port.add_argument("sandbox_id", metavar="ID")
    port.add_argument("port", type=int, metavar="PORT")
    port.add_argument("--local-port", type=int, default=0, help="0 (default): any free port")
    port.add_argument("--local-host", default="127.0.0.1")
    port.add_argument(
        "--address", default="127.0.0.1", help="where to connect, seen from inside the sandbox"
    )


def host_handler(
    args: argparse.Namespace,
) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]] | None:
    """The coroutine function running `args`, if it is one of these subcommands."""
    if args.command == "port":
        return _port
    if args.command == "images":
        return {"list": _list, "warm": _warm, "prune": _prune}[args.images_command]
    return None


def _name(info: ImageInfo) -> str:
    return ",".join(info.tags) or "<none>"


async def _list(args: argparse.Namespace) -> int:
    async with open_cluster(["local"], admin=True) as cluster:
        reports = await list_images(cluster)
    rows: list[tuple[str, ...]] = [
        ("HOST", "IMAGE", "ID", "SIZE", "CREATED", "LAST USED", "CONTAINERS")
    ]
    for host_id, report in reports.items():
        for info in report.images:
            rows.append(
                (
                    host_id,
                    _name(info),
                    info.image_id.removeprefix("sha256:")[:12],
                    size_text(info.size),
                    timestamp(info.created),
                    timestamp(info.last_used),
                    str(info.containers),
                )
            )
    print_table(rows)
    for host_id, report in reports.items():
        disk = f" of a {size_text(report.disk_size)} disk" if report.disk_size else ""
        print(f"{host_id}: {len(report.images)} images take {size_text(report.total_size)}{disk}")
    return 0


async def _warm(args: argparse.Namespace) -> int:
    async with open_cluster(["local"], admin=True) as cluster:
        warmed = await warm_image(cluster, args.image)
    for host_id, info in warmed.items():
        short = info.image_id.removeprefix("sha256:")[:12]
        print(f"{host_id}: {args.image} ready ({short}, {size_text(info.size)})")
    return 0


def prune_limit(text: str) -> tuple[int | None, float | None]:
    """(max_bytes, max_percent) from ``--max-size``: ``"20g"``, ``"0"`` or ``"50%"``."""
    text = text.strip()
    if text.endswith("%"):
        try:
            return None, float(text[:-1])
        except ValueError:
            raise SystemExit(f"rock images prune: --max-size {text!r} is not a percent") from None
    if text == "0":
        return 0, None
    try:
        return parse_size(text, "--max-size"), None
    except RockError as exc:
        raise SystemExit(f"rock images prune: {exc}") from None


async def _prune(args: argparse.Namespace) -> int:
    max_bytes, max_percent = prune_limit(args.max_size)
    async with open_cluster(["local"], admin=True) as cluster:
        results = await prune_images(
            cluster,
            max_bytes=max_bytes,
            max_percent=max_percent,
            only=args.only,
            dry_run=args.dry_run,
        )
    verb = "would remove" if args.dry_run else "removed"
    failed = False
    for host_id, result in results.items():
        for info in result.removed:
            print(f"{host_id}: {verb} {_name(info)} ({size_text(info.size - info.shared_size)})")
        for error in result.errors:
            print(f"rock images prune: {host_id}: kept {error}", file=sys.stderr)
            failed = True
        print(
            f"{host_id}: images took {size_text(result.total_before)}, "
            f"{'would take' if args.dry_run else 'now take'} {size_text(result.total_after)} "
            f"(limit {size_text(result.limit)}; "
            f"{'would free' if args.dry_run else 'freed'} {size_text(result.freed)})"
        )
    return 1 if failed else 0


async def _port(args: argparse.Namespace) -> int:
    async with open_cluster(["local"], admin=True) as cluster:
        conn, _ = await locate_sandbox(cluster.hosts, args.sandbox_id)

        def report(exc: RockError) -> None:
            print(f"rock port: {exc}", file=sys.stderr, flush=True)

        conn.require("ports", "forward ports")
        async with open_port_forward(
            cluster.hosts[conn.welcome.host_id].link,  # the live link, after any reconnect
            args.sandbox_id,
            args.port,
            local_host=args.local_host,
            local_port=args.local_port,
            address=args.address,
            on_error=report,
        ) as forward:
            print(
                f"forwarding {forward.host}:{forward.port} -> sandbox {args.sandbox_id} "
                f"port {args.port} (Ctrl-C to stop)",
                flush=True,
            )
            outcome = 0
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        # The owner may remove or stop the sandbox at any time: then stop too.
                        nonlocal outcome
                        while True:
                            await anyio.sleep(WATCH_INTERVAL)
                            try:
                                reply = await conn.call(
                                    InspectSandbox(sandbox_id=args.sandbox_id),
                                    SandboxReply,
                                )
                                state = reply.sandbox.state
                            except SandboxNotFound:
                                state = "removed"
                            if state != "running":
                                print(
                                    f"rock port: sandbox {args.sandbox_id} is {state}; stopping",
                                    file=sys.stderr,
                                )
                                outcome = 1
                                tg.cancel_scope.cancel()
                                return

                    tg.start_soon(watch)
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        break
            print(
                f"forwarded {forward.connections} connections, {forward.bytes_in} bytes in, "
                f"{forward.bytes_out} bytes out",
                file=sys.stderr,
            )
            return outcome
