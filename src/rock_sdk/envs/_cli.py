"""``rock env``: list, show, register and remove the hub's environment specs.

    rock env list [--tag TAG] [--owner OWNER] [--json]
    rock env show NAME
    rock env register NAME (--env ID | --entry-point MODULE:NAME | --task FILE.json)
                      [--image IMAGE] [--param KEY=VALUE]... [--tag TAG]...
                      [--description TEXT] [--owner OWNER] [--replace]
    rock env register --file SPEC.json [--replace]
    rock env rm NAME [NAME...]

The store is the user's data folder (see `Hub`); ``--hub DIR`` points at another. A
``--param`` value is read as JSON when it parses (``max_turns=80``, ``dim_room=[8,8]``), else
taken as a string. Exit status: 0, or 1 when the hub refused (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from rock_core import BadRequest, RockError

from .._cli_format import print_table, timestamp
from ._hub import Hub, HubSpec
from ._task import TaskSpec

__all__ = ["add_env_parser", "run_env"]


def add_env_parser(commands: Any) -> None:
    """Add the ``env`` command and its subcommands to `rock`'s subparsers."""
    env = commands.add_parser("env", help="manage the hub's environment specs")
    env.add_argument("--hub", default=None, metavar="DIR", help="the hub folder to use")
    sub = env.add_subparsers(dest="env_command", required=True)

    listing = sub.add_parser("list", help="list specs (sorted by name)")
    listing.add_argument("--tag", default=None, help="only specs with this tag")
    listing.add_argument("--owner", default=None, help="only specs of this owner")
    listing.add_argument("--json", action="store_true", help="one JSON spec per line")

    show = sub.add_parser("show", help="print one spec as JSON")
    show.add_argument("name")

    register = sub.add_parser("register", help="add a spec")
    register.add_argument("name", nargs="?", default=None)
    what = register.add_mutually_exclusive_group()
    what.add_argument("--env", default="", metavar="ID", help="a registered environment id")
    what.add_argument("--entry-point", default="", metavar="MODULE:NAME")
    what.add_argument("--task", default=None, metavar="FILE", help="a task spec, as JSON")
    what.add_argument("--file", default=None, metavar="FILE", help="a whole spec, as JSON")
    register.add_argument("--image", default="")
    register.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument("--tag", action="append", default=[])
    register.add_argument("--description", default="")
    register.add_argument("--owner", default="")
    register.add_argument("--replace", action="store_true", help="overwrite a spec of that name")

    remove = sub.add_parser("rm", help="remove specs")
    remove.add_argument("names", nargs="+")


def run_env(args: argparse.Namespace) -> int:
    """Run a parsed ``rock env`` command; 1 (and the reason on stderr) when the hub refuses."""
    hub = Hub(args.hub)
    try:
        if args.env_command == "list":
            return _list(hub, args)
        if args.env_command == "show":
            print(_json(hub.get(args.name)))
            return 0
        if args.env_command == "register":
            spec = hub.register(_spec_from(args), replace=args.replace)
            print(f"registered {spec.name}")
            return 0
        failed = 0
        for name in args.names:
            try:
                hub.delete(name)
                print(name)
            except RockError as exc:
                print(f"rock env rm: {exc}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    except RockError as exc:
        print(f"rock env {args.env_command}: {exc}", file=sys.stderr)
        return 1


def _list(hub: Hub, args: argparse.Namespace) -> int:
    specs = hub.list(tag=args.tag, owner=args.owner)
    if args.json:
        for spec in specs:
            print(msgspec.json.encode(spec).decode())
        return 0
    rows = [("NAME", "KIND", "TAGS", "OWNER", "CREATED", "DESCRIPTION")]
    for spec in specs:
        created = timestamp(spec.created)
        what = spec.env or spec.entry_point or "task"
        rows.append((spec.name, what, ",".join(spec.tags), spec.owner, created, spec.description))
    print_table(rows)
    return 0


def _spec_from(args: argparse.Namespace) -> HubSpec:
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
        parameters=dict(_param(p) for p in args.param),
        tags=list(args.tag),
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
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the {what} file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"the {what} file {path} must hold a JSON object")
    return data


def _convert(data: dict[str, Any], kind: type[Any], what: str) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid {what}: {exc}") from exc


def _json(spec: HubSpec) -> str:
    return msgspec.json.format(msgspec.json.encode(spec), indent=2).decode()
