"""`rock pool ls` and `rock pool rm NAME`: warm-pool members on this machine's agent.

A pool lives in the program that opened it; what the command line sees are its members, the
sandboxes labelled ``rock.pool=NAME``, through the local agent like `rock ps`. Whether a member
is idle or handed out is known only to that program: here each shows its container state and
owner. `rock pool rm` removes a pool's members whoever owns them (for example after a crash,
before the owner's lease reaps them).

Rules:
- `pool ls` shows the members' `SandboxInfo`s: the table and ``--json`` are the same rows.
- `pool rm` of a pool with no members here, or with a member it could not remove, exits 125.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from rock_core import Cluster, NotFound, RockError, SandboxNotFound
from rock_core.defaults import POOL_LABEL
from rock_core.protocol import SandboxInfo

from ._cli_base import ExitCode, new_typer, open_admin, run_async, say_error
from ._cli_format import Column, duration, show_rows

pool_app = new_typer("List or remove warm-pool members on this host.")

MEMBER_COLUMNS: list[Column[SandboxInfo]] = [
    Column("POOL", lambda i: i.labels[POOL_LABEL]),
    Column("SANDBOX", lambda i: i.sandbox_id),
    Column("IMAGE", lambda i: i.image),
    Column("STATE", lambda i: i.state),
    Column("AGE", lambda i: duration(time.time() - i.created_at, compact=True)),
    Column("OWNER", lambda i: i.owner),
]


async def _members(cluster: Cluster, name: str | None, owner: str = "") -> list[SandboxInfo]:
    found = await cluster.list_host_sandboxes(owner=owner)
    return sorted(
        (
            info
            for info in found
            if POOL_LABEL in info.labels and (name is None or info.labels[POOL_LABEL] == name)
        ),
        key=lambda info: (info.labels[POOL_LABEL], info.created_at),
    )


def pool_ls(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="only this pool's members")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="only ids")] = False,
    json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Pool members by pool, with state and owner."""

    async def body() -> None:
        async with open_admin() as cluster:
            members = await _members(cluster, name)
        if quiet:
            for info in members:
                print(info.sandbox_id)
            return
        show_rows(members, MEMBER_COLUMNS, json=json)

    run_async(ctx, body)


pool_app.command("ls")(pool_ls)
pool_app.command("list", hidden=True)(pool_ls)


@pool_app.command("rm")
def pool_rm(
    ctx: typer.Context,
    name: str,
    owner: Annotated[str, typer.Option(help="only the members of this owner")] = "",
) -> None:
    """Remove every member of a pool (all owners)."""

    async def body() -> int:
        failed = 0
        async with open_admin() as cluster:
            members = await _members(cluster, name, owner)
            if not members:
                whose = f" owned by {owner}" if owner else ""
                raise NotFound(f"no members of pool {name!r}{whose} here")
            for info in members:
                try:
                    await cluster.remove_any(info.sandbox_id)
                except SandboxNotFound:
                    pass  # gone meanwhile (its owner released it, or a lease ended): the goal
                except RockError as exc:
                    say_error("rock pool rm", f"{info.sandbox_id}: {exc}")
                    failed += 1
                    continue
                print(info.sandbox_id)
        return ExitCode.FAILED if failed else ExitCode.OK

    run_async(ctx, body)
