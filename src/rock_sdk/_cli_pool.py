"""`rock pool ls` and `rock pool rm NAME`: warm-pool members on the cluster's hosts.

A pool lives in the program that opened it; what the command line sees are its members, the
sandboxes labelled ``rock.pool=NAME``, on every host `rock ps` reaches, and the pools the config
file names (``[pools.NAME]``, which programs open with `RockConfig.open_pool`). Whether a member
is idle or handed out is known only to that program: here each shows its container state,
owner and host. `rock pool rm` removes a pool's members whoever owns them (for example after a
crash, before the owner's lease reaps them).

Rules:
- `pool ls` shows `PoolRow`s: the table and ``--json`` are the same rows. A configured pool
  shows its size on each of its members' rows, and on one row of its own when it has none.
- `pool rm` of a pool with no members here, or with a member it could not remove, exits 125.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import msgspec
import typer

from rock_core import Cluster, NotFound, RockError, SandboxNotFound
from rock_core.defaults import POOL_LABEL

from . import _cli_config
from ._cli_base import ExitCode, new_typer, open_admin, run_async, say_error
from ._cli_config import HostedSandbox, age, hosted_sandboxes
from ._cli_format import Column, show_rows

pool_app = new_typer("List or remove warm-pool members on the cluster's hosts.")


class PoolRow(msgspec.Struct, kw_only=True):
    """One member of a pool (with its host), or a configured pool that has none."""

    pool: str
    size: int | None  # the configured size (``[pools.NAME]``); None for a pool not configured
    member: HostedSandbox | None


def _cell(get: Callable[[HostedSandbox], str]) -> Callable[[PoolRow], str]:
    return lambda row: "-" if row.member is None else get(row.member)


MEMBER_COLUMNS: list[Column[PoolRow]] = [
    Column("POOL", lambda r: r.pool),
    Column("SANDBOX", _cell(lambda i: i.sandbox_id)),
    Column("IMAGE", _cell(lambda i: i.image)),
    Column("STATE", _cell(lambda i: i.state)),
    Column("AGE", _cell(age)),
    Column("OWNER", _cell(lambda i: i.owner)),
    Column("HOST", _cell(lambda i: i.host)),
    Column("SIZE", lambda r: "-" if r.size is None else str(r.size)),
]


async def _members(cluster: Cluster, name: str | None, owner: str = "") -> list[HostedSandbox]:
    found = await hosted_sandboxes(cluster, owner=owner)
    return sorted(
        (
            info
            for info in found
            if POOL_LABEL in info.labels and (name is None or info.labels[POOL_LABEL] == name)
        ),
        key=lambda info: (info.labels[POOL_LABEL], info.created_at),
    )


def pool_rows(members: list[HostedSandbox], name: str | None) -> list[PoolRow]:
    """`members` and the configured pools (only `name`, if given) as rows, by pool name."""
    sizes = {n: p.size for n, p in _cli_config.config().pools.items() if name in (None, n)}
    rows = [PoolRow(pool=m.labels[POOL_LABEL], size=None, member=m) for m in members]
    rows = [msgspec.structs.replace(r, size=sizes.get(r.pool)) for r in rows]
    have = {row.pool for row in rows}
    rows += [PoolRow(pool=n, size=size, member=None) for n, size in sizes.items() if n not in have]
    return sorted(rows, key=lambda r: (r.pool, r.member is not None))


def pool_ls(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="only this pool's members")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="only ids")] = False,
    json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Pool members by pool, with state, owner and host, and the configured pools."""

    async def body() -> None:
        async with open_admin() as cluster:
            members = await _members(cluster, name)
        if quiet:
            for info in members:
                print(info.sandbox_id)
            return
        show_rows(pool_rows(members, name), MEMBER_COLUMNS, json=json)

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
