"""`rock checkpoint ID` and `rock checkpoints ls|rm`: make, list and remove checkpoints on this
cluster's hosts, whoever made them (an administrator's connection; see docs/checkpoints.md).

Rules:
- `checkpoint ID` freezes a running sandbox (id or unique prefix) and prints the checkpoint's
  id (``--json``: its record). The checkpoint belongs to the sandbox's owner and goes with it,
  unless ``--keep``.
- `checkpoints ls` shows one row per (host, checkpoint): the table and ``--json`` are the same
  rows (`CheckpointInfo`); ``-q`` prints the ids only, once each.
- `checkpoints rm ID...` takes ids or unique prefixes, removes each on every host, prints each
  one removed; one still used by sandboxes on a host is kept there and said on stderr, as is
  one not found. Any of those exits 125.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from rock_core import BadRequest, RockError, locate_sandbox, make_checkpoint
from rock_core.protocol import CheckpointInfo

from ._cli_base import ExitCode, new_typer, open_admin, resolve_ids, run_async, say_error
from ._cli_format import Column, duration, show_json, show_rows, size_text

checkpoints_app = new_typer("List and remove checkpoints (made by `rock checkpoint` or a program).")

Json = Annotated[bool, typer.Option("--json", help="one JSON object per line")]

CHECKPOINT_COLUMNS: list[Column[CheckpointInfo]] = [
    Column("CHECKPOINT", lambda c: c.checkpoint_id),
    Column("HOST", lambda c: c.host_id),
    Column("SOURCE", lambda c: c.source),
    Column("SIZE", lambda c: size_text(c.size)),
    Column("AGE", lambda c: duration(max(0.0, time.time() - c.created), compact=True)),
    Column("USED BY", lambda c: str(c.containers)),
    Column("KEPT", lambda c: "yes" if c.kept else "no"),
]


def add_commands(app: typer.Typer) -> None:
    """Add `checkpoint` and the `checkpoints` group to the `rock` app."""
    app.command("checkpoint")(checkpoint)
    app.add_typer(checkpoints_app, name="checkpoints")


def checkpoint(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(metavar="ID", help="a sandbox id or unique prefix")],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="its id (default: ck-...)")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="keep it after its owner is gone")] = False,
    json: Annotated[bool, typer.Option("--json", help="its record as JSON")] = False,
) -> None:
    """Freeze a running sandbox's files as a checkpoint on its host; print its id."""

    async def body() -> None:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
            made = await make_checkpoint(conn, sandbox_id, name=name, keep=keep)
            if json:
                (info,) = [
                    c
                    for c in await cluster.checkpoints()
                    if c.checkpoint_id == made.checkpoint_id and c.host_id == made.host_id
                ]
                show_json(info)
                return
        print(made.checkpoint_id)

    run_async(ctx, body)


@checkpoints_app.command("ls")
def ls(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="only checkpoint ids")] = False,
    json: Json = False,
) -> None:
    """List the checkpoints on every host, oldest first."""

    async def body() -> None:
        async with open_admin() as cluster:
            found = await cluster.checkpoints()
        if quiet:
            for checkpoint_id in dict.fromkeys(c.checkpoint_id for c in found):
                print(checkpoint_id)
            return
        show_rows(found, CHECKPOINT_COLUMNS, json=json)

    run_async(ctx, body)


checkpoints_app.command("list", hidden=True)(ls)


@checkpoints_app.command("rm")
def rm(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="ids or unique prefixes")],
) -> None:
    """Remove checkpoints on every host (one forks still use stays where they run)."""

    async def body() -> int:
        failed = False
        async with open_admin() as cluster:
            known = sorted({c.checkpoint_id for c in await cluster.checkpoints()})
            for given in ids:
                try:
                    checkpoint_id = resolve(known, given)
                    kept = await cluster.delete_checkpoint(checkpoint_id)
                except RockError as exc:
                    say_error("rock checkpoints rm", str(exc))
                    failed = True
                    continue
                for copy in kept:
                    say_error(
                        "rock checkpoints rm",
                        f"checkpoint {checkpoint_id} kept on host {copy.host_id}: "
                        f"{copy.containers} sandboxes use it (it goes at a later rm, or with "
                        "its owner)",
                    )
                    failed = True
                if not kept:
                    print(checkpoint_id)
        return ExitCode.FAILED if failed else ExitCode.OK

    run_async(ctx, body)


def resolve(known: list[str], wanted: str) -> str:
    """A checkpoint id for an id or unique prefix (an exact id always wins)."""
    if not wanted:
        raise BadRequest("the checkpoint id is empty: give an id or a unique prefix of one")
    if wanted in known:
        return wanted
    matches = [k for k in known if k.startswith(wanted)]
    if len(matches) > 1:
        raise BadRequest(
            f"checkpoint id prefix {wanted!r} is ambiguous: it matches {', '.join(matches)}"
        )
    return matches[0] if matches else wanted


__all__ = ["CHECKPOINT_COLUMNS", "add_commands", "checkpoints_app"]
