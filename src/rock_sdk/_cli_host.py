"""`rock images ...` and `rock port ...`: images on the cluster's hosts, and a port of any sandbox.

Both use an embedded core reaching the configured hosts, like `rock ps`: `rock port` reaches a
sandbox by id (or a unique prefix) whoever owns it, and only carries bytes, so the sandbox's
owner and lifetime do not change.

Rules:
- `images ls` shows `ImageRow`s: the table and ``--json`` are the same rows.
- The images commands act on every reachable host, or with ``--host H`` on that host only.
- A prune that could not remove an image says so on stderr and exits 125.
"""

from __future__ import annotations

import sys
from typing import Annotated

import anyio
import msgspec
import typer

from rock_core import (
    BadRequest,
    RockError,
    SandboxNotFound,
    list_images,
    locate_sandbox,
    open_port_forward,
    prune_images,
    warm_image,
)
from rock_core.protocol import ImageInfo, InspectSandbox, SandboxReply

from ._cli_base import (
    ExitCode,
    Interrupts,
    new_typer,
    open_admin,
    resolve_ids,
    run_async,
    run_interruptible,
    say_error,
)
from ._cli_format import Column, parse_size, show_rows, size_text, timestamp
from ._cli_progress import NoBar, progress_bar

DEFAULT_PRUNE_LIMIT = "50%"
WATCH_INTERVAL = 2.0  # seconds between checks that a forwarded sandbox still runs

images_app = new_typer("List, warm or prune the images on the cluster's hosts.")
Host = Annotated[
    list[str] | None,
    typer.Option(
        "--host", metavar="HOST", help="only this host (its id, as HOST shows it); repeatable"
    ),
]


class ImageRow(msgspec.Struct, kw_only=True):
    """One image of one host, as `rock images ls` shows it."""

    host: str
    tags: list[str]
    image_id: str
    size: int
    created: float
    last_used: float
    containers: int

    @classmethod
    def of(cls, host: str, info: ImageInfo) -> ImageRow:
        """The row of `info` on `host`."""
        return cls(
            host=host,
            tags=info.tags,
            image_id=info.image_id,
            size=info.size,
            created=info.created,
            last_used=info.last_used,
            containers=info.containers,
        )


IMAGE_COLUMNS: list[Column[ImageRow]] = [
    Column("HOST", lambda r: r.host),
    Column("IMAGE", lambda r: ",".join(r.tags) or "<none>"),
    Column("ID", lambda r: r.image_id.removeprefix("sha256:")[:12]),
    Column("SIZE", lambda r: size_text(r.size)),
    Column("CREATED", lambda r: timestamp(r.created)),
    Column("LAST USED", lambda r: timestamp(r.last_used)),
    Column("CONTAINERS", lambda r: str(r.containers)),
]


def add_commands(app: typer.Typer) -> None:
    """Add `port` to the `rock` app (`images` is `images_app`)."""
    app.command("port")(port)


def _name(info: ImageInfo) -> str:
    return ",".join(info.tags) or "<none>"


def images_ls(
    ctx: typer.Context,
    json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    host: Host = None,
) -> None:
    """Images with size, creation and last use."""

    async def body() -> None:
        async with open_admin() as cluster:
            reports = await list_images(cluster, hosts=host)
        rows = [
            ImageRow.of(host, info) for host, report in reports.items() for info in report.images
        ]
        show_rows(rows, IMAGE_COLUMNS, json=json)
        if json:
            return
        for host_id, report in reports.items():
            disk = f" of a {size_text(report.disk_size)} disk" if report.disk_size else ""
            print(
                f"{host_id}: {len(report.images)} images take {size_text(report.total_size)}{disk}"
            )

    run_async(ctx, body)


images_app.command("ls")(images_ls)
images_app.command("list", hidden=True)(images_ls)


@images_app.command("warm")
def images_warm(ctx: typer.Context, image: str, host: Host = None, quiet: NoBar = False) -> None:
    """Make an image present (a no-op when it is)."""

    async def body() -> None:
        async with open_admin() as cluster:
            with progress_bar(quiet=quiet) as progress:
                warmed = await warm_image(cluster, image, hosts=host, progress=progress)
        for host_id, info in warmed.items():
            short = info.image_id.removeprefix("sha256:")[:12]
            print(f"{host_id}: {image} ready ({short}, {size_text(info.size)})")

    run_async(ctx, body)


def prune_limit(text: str) -> tuple[int | None, float | None]:
    """(max_bytes, max_percent) from ``--max-size``: ``"20g"``, ``"0"`` or ``"50%"``."""
    text = text.strip()
    if text.endswith("%"):
        try:
            return None, float(text[:-1])
        except ValueError:
            raise BadRequest(f"--max-size {text!r} is not a percent") from None
    if text == "0":
        return 0, None
    return parse_size(text, "--max-size"), None


@images_app.command("prune")
def images_prune(
    ctx: typer.Context,
    max_size: Annotated[
        str,
        typer.Option(
            metavar="SIZE",
            help="bytes images may take ('20g') or a percent of the disk holding them ('50%');"
            f" default {DEFAULT_PRUNE_LIMIT}",
        ),
    ] = DEFAULT_PRUNE_LIMIT,
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PATTERN",
            help="only images whose every tag matches this pattern ('scratch/*'); repeatable",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be removed")] = False,
    host: Host = None,
) -> None:
    """Remove least recently used unused images while images take too much."""

    async def body() -> int:
        max_bytes, max_percent = prune_limit(max_size)
        async with open_admin() as cluster:
            results = await prune_images(
                cluster,
                max_bytes=max_bytes,
                max_percent=max_percent,
                only=list(only or []),
                dry_run=dry_run,
                hosts=host,
            )
        verb = "would remove" if dry_run else "removed"
        failed = False
        for host_id, result in results.items():
            for info in result.removed:
                print(
                    f"{host_id}: {verb} {_name(info)} ({size_text(info.size - info.shared_size)})"
                )
            for error in result.errors:
                say_error("rock images prune", f"{host_id}: kept {error}")
                failed = True
            print(
                f"{host_id}: images took {size_text(result.total_before)}, "
                f"{'would take' if dry_run else 'now take'} {size_text(result.total_after)} "
                f"(limit {size_text(result.limit)}; "
                f"{'would free' if dry_run else 'freed'} {size_text(result.freed)})"
            )
        return ExitCode.FAILED if failed else ExitCode.OK

    run_async(ctx, body)


def port(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(metavar="ID")],
    sandbox_port: Annotated[int, typer.Argument(metavar="PORT", min=1, max=65535)],
    local_port: Annotated[int, typer.Option(help="0 (default): any free port")] = 0,
    local_host: str = "127.0.0.1",
    address: Annotated[
        str, typer.Option(help="where to connect, seen from inside the sandbox")
    ] = "127.0.0.1",
) -> None:
    """Forward a local port to a port in a sandbox until Ctrl-C."""
    run_interruptible(
        ctx,
        lambda interrupts: _port(
            interrupts, sandbox, sandbox_port, local_port, local_host, address
        ),
    )


async def _port(
    interrupts: Interrupts,
    sandbox: str,
    sandbox_port: int,
    local_port: int,
    local_host: str,
    address: str,
) -> int:
    async with open_admin() as cluster:
        (sandbox_id,) = await resolve_ids(cluster, [sandbox])
        conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)

        def report(exc: RockError) -> None:
            say_error("rock port", str(exc))

        conn.require("ports", "forward ports")
        async with open_port_forward(
            cluster.hosts[conn.welcome.host_id].link,  # the live link, after any reconnect
            sandbox_id,
            sandbox_port,
            local_host=local_host,
            local_port=local_port,
            address=address,
            on_error=report,
        ) as forward:
            print(
                f"forwarding {forward.host}:{forward.port} -> sandbox {sandbox_id} "
                f"port {sandbox_port} (Ctrl-C to stop)",
                flush=True,
            )
            outcome = int(ExitCode.OK)
            with interrupts.cancels():
                # The owner may remove or stop the sandbox at any time: then stop too.
                while True:
                    await anyio.sleep(WATCH_INTERVAL)
                    try:
                        request = InspectSandbox(sandbox_id=sandbox_id)
                        state = (await conn.call(request, SandboxReply)).sandbox.state
                    except SandboxNotFound:
                        state = "removed"
                    if state not in ("running", "paused"):  # paused: resumed on use
                        say_error("rock port", f"sandbox {sandbox_id} is {state}; stopping")
                        outcome = ExitCode.FAILED
                        break
            print(
                f"forwarded {forward.connections} connections, {forward.bytes_in} bytes in, "
                f"{forward.bytes_out} bytes out",
                file=sys.stderr,
            )
            return outcome
