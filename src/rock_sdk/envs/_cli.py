"""``rock env``: list, show, register and remove the hub's environment specs.

    rock env ls [--tag TAG] [--owner OWNER] [--json]
    rock env show NAME
    rock env register NAME (--env ID | --entry-point MODULE:NAME | --task FILE.json)
                      [--image IMAGE] [--param KEY=VALUE]... [--tag TAG]...
                      [--description TEXT] [--owner OWNER] [--replace]
    rock env register --file SPEC.json [--replace]
    rock env rm NAME [NAME...]

The store is the user's data folder (see `Hub`); ``rock env --hub DIR ...`` points at another.
A ``--param`` value is read as JSON when it parses (``max_turns=80``, ``dim_room=[8,8]``), else
taken as a string.

Rules:
- `env ls` shows `HubSpec`s: the table and ``--json`` (one spec per line) are the same rows.
  `env show` prints a spec as JSON, the form ``register --file`` reads back.
- Exit codes follow `rock`'s table: 0, or 125 when the hub refused (the reason on stderr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from rock_core import BadRequest, RockError

from .._cli_base import ExitCode, new_typer, run_async, say_error
from .._cli_format import Column, show_json, show_rows, timestamp
from ._hub import Hub, HubSpec
from ._task import TaskSpec

__all__ = ["env_app"]

env_app = new_typer("Manage the hub's environment specs.")

SPEC_COLUMNS: list[Column[HubSpec]] = [
    Column("NAME", lambda s: s.name),
    Column("KIND", lambda s: s.env or s.entry_point or "task"),
    Column("TAGS", lambda s: ",".join(s.tags)),
    Column("OWNER", lambda s: s.owner),
    Column("CREATED", lambda s: timestamp(s.created)),
    Column("DESCRIPTION", lambda s: s.description),
]

Json = Annotated[bool, typer.Option("--json", help="as JSON")]


@env_app.callback()
def _hub_option(
    ctx: typer.Context,
    hub: Annotated[
        str | None, typer.Option("--hub", metavar="DIR", help="the hub folder to use")
    ] = None,
) -> None:
    """Manage the hub's environment specs."""
    ctx.obj = hub


def _hub(ctx: typer.Context) -> Hub:
    parent = ctx.parent
    return Hub(parent.obj if parent is not None else None)


def env_ls(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="only specs with this tag")] = None,
    owner: Annotated[str | None, typer.Option(help="only specs of this owner")] = None,
    json: Annotated[bool, typer.Option("--json", help="one JSON spec per line")] = False,
) -> None:
    """List specs (sorted by name)."""

    async def body() -> None:
        show_rows(_hub(ctx).list(tag=tag, owner=owner), SPEC_COLUMNS, json=json)

    run_async(ctx, body)


env_app.command("ls")(env_ls)
env_app.command("list", hidden=True)(env_ls)


@env_app.command("show")
def env_show(ctx: typer.Context, name: str, json: Json = False) -> None:
    """Print one spec as JSON (with or without --json)."""

    async def body() -> None:
        show_json(_hub(ctx).get(name))

    run_async(ctx, body)


@env_app.command("register")
def env_register(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument()] = None,
    env: Annotated[str, typer.Option(metavar="ID", help="a registered environment id")] = "",
    entry_point: Annotated[str, typer.Option(metavar="MODULE:NAME")] = "",
    task: Annotated[str | None, typer.Option(metavar="FILE", help="a task spec, as JSON")] = None,
    file: Annotated[str | None, typer.Option(metavar="FILE", help="a whole spec, as JSON")] = None,
    image: str = "",
    param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE")] = None,
    tag: Annotated[list[str] | None, typer.Option()] = None,
    description: str = "",
    owner: str = "",
    replace: Annotated[
        bool, typer.Option("--replace", help="overwrite a spec of that name")
    ] = False,
) -> None:
    """Add a spec."""
    chosen = [o for o, v in (("--env", env), ("--entry-point", entry_point)) if v]
    chosen += [o for o, v in (("--task", task), ("--file", file)) if v is not None]

    async def body() -> None:
        if len(chosen) > 1:
            raise BadRequest(f"give one of {' and '.join(chosen)}, not several")
        request = _Register(
            name, env, entry_point, task, file, image, param, tag, description, owner
        )
        spec = _hub(ctx).register(_spec_from(request), replace=replace)
        print(f"registered {spec.name}")

    run_async(ctx, body)


@env_app.command("rm")
def env_rm(ctx: typer.Context, names: list[str]) -> None:
    """Remove specs."""

    async def body() -> int:
        hub = _hub(ctx)
        failed = 0
        for name in names:
            try:
                hub.delete(name)
                print(name)
            except RockError as exc:
                say_error("rock env rm", str(exc))
                failed += 1
        return ExitCode.FAILED if failed else ExitCode.OK

    run_async(ctx, body)


class _Register(msgspec.Struct, array_like=True):
    """The options of `env register`, as given."""

    name: str | None
    env: str
    entry_point: str
    task: str | None
    file: str | None
    image: str
    param: list[str] | None
    tag: list[str] | None
    description: str
    owner: str


def _spec_from(args: _Register) -> HubSpec:
    if args.file is not None:
        data = _read_json(args.file, "spec")
        if args.name is not None:
            data["name"] = args.name
        spec: HubSpec = _convert(data, HubSpec, "spec")
        return spec
    if args.name is None:
        raise BadRequest("give a NAME (or --file SPEC.json)")
    task = None
    if args.task is not None:
        task = _convert(_read_json(args.task, "task"), TaskSpec, "task spec")
    return HubSpec(
        name=args.name,
        env=args.env,
        entry_point=args.entry_point,
        task=task,
        image=args.image,
        parameters=dict(_param(p) for p in args.param or []),
        tags=list(args.tag or []),
        description=args.description,
        owner=args.owner,
    )


def _param(pair: str) -> tuple[str, Any]:
    key, sep, text = pair.partition("=")
    if not sep or not key:
        raise BadRequest(f"--param wants KEY=VALUE, got {pair!r}")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise BadRequest(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # not UTF-8 text: no JSON
        raise BadRequest(f"the {what} file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"the {what} file {path} must hold a JSON object")
    return data


def _convert(data: dict[str, Any], kind: type[Any], what: str) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid {what}: {exc}") from exc
