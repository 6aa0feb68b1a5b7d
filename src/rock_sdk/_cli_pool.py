"""`rock pool ls` and `rock pool rm NAME`: warm-pool members on this machine's agent.

A pool lives in the program that opened it; what the command line sees are its members, the
sandboxes labelled ``rock.pool=NAME``, through the local agent like `rock ps`. Whether a member
is idle or handed out is known only to that program: here each shows its container state and
owner. `rock pool rm` removes a pool's members whoever owns them (for example after a crash,
before the owner's lease reaps them).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from rock_core import Cluster, RockError, SandboxNotFound, open_cluster
from rock_core.defaults import POOL_LABEL
from rock_core.protocol import SandboxInfo

from ._cli_format import duration, print_table


def add_pool_parser(sub: Any) -> None:
    """Add `pool` to the `rock` command's subparsers."""
    pool = sub.add_parser("pool", help="list or remove warm-pool members on this host")
    what = pool.add_subparsers(dest="pool_command", required=True)
    ls = what.add_parser("ls", help="pool members by pool, with state and owner")
    ls.add_argument("name", nargs="?", help="only this pool's members")
    ls.add_argument("-q", "--quiet", action="store_true", help="only ids")
    rm = what.add_parser("rm", help="remove every member of a pool (all owners)")
    rm.add_argument("name")
    rm.add_argument("--owner", default="", help="only the members of this owner")


def pool_handler(
    args: argparse.Namespace,
) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]] | None:
    """The coroutine function running `args`, if it is a `pool` subcommand."""
    if args.command != "pool":
        return None
    return {"ls": _ls, "rm": _rm}[args.pool_command]


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


async def _ls(args: argparse.Namespace) -> int:

    async with open_cluster(["local"], admin=True) as cluster:
        members = await _members(cluster, args.name)
    if args.quiet:
        for info in members:
            print(info.sandbox_id)
        return 0
    rows: list[tuple[str, ...]] = [("POOL", "SANDBOX", "IMAGE", "STATE", "AGE", "OWNER")]
    now = time.time()
    for info in members:
        age = duration(now - info.created_at, compact=True)
        rows.append(
            (info.labels[POOL_LABEL], info.sandbox_id, info.image, info.state, age, info.owner)
        )
    print_table(rows)
    return 0


async def _rm(args: argparse.Namespace) -> int:
    failed = 0
    async with open_cluster(["local"], admin=True) as cluster:
        members = await _members(cluster, args.name, args.owner)
        if not members:
            whose = f" owned by {args.owner}" if args.owner else ""
            print(f"rock pool rm: no members of pool {args.name!r}{whose} here", file=sys.stderr)
            return 1
        for info in members:
            try:
                await cluster.remove_any(info.sandbox_id)
            except SandboxNotFound:
                pass  # gone meanwhile (its owner released it, or a lease ended): the goal
            except RockError as exc:
                print(f"rock pool rm: {info.sandbox_id}: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(info.sandbox_id)
    return 1 if failed else 0
