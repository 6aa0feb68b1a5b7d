"""`rock`: run a command in a fresh sandbox, list and remove sandboxes, manage environments.

Every subcommand uses an embedded core with a local agent: there is no server to start.

Rules:
- A failure is said once, on one line (``rock CMD: what went wrong``), and the command exits
  with `EXIT_ERROR`. The kit's log shows on stderr as ``rock: ...`` (warnings and up, or
  ``$ROCK_LOG_LEVEL``); an error logged with the very error the command reports (a host that
  cannot be reached) is not shown again.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence

import anyio

from rock_core import RockError, open_cluster

from ._cli_format import duration, print_table
from ._cli_host import add_host_parsers, host_handler
from ._cli_lifecycle import add_lifecycle_parsers, lifecycle_handler
from ._cli_pool import add_pool_parser, pool_handler
from ._config import SandboxConfig
from ._sandbox import Sandbox
from .envs._cli import add_env_parser, run_env

EXIT_ERROR = 125  # like `docker run`: the tool failed, not the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rock", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a command in a fresh sandbox, then remove it",
        usage="rock run [OPTIONS] IMAGE -- COMMAND [ARG...]",
    )
    run.add_argument("image")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    run.add_argument("--cpus", type=float, default=1.0)
    run.add_argument("--memory", default="1g")
    run.add_argument("--network", action="store_true", help="give the sandbox a network")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("-w", "--workdir", default="")
    run.add_argument("--timeout", type=float, default=None, help="seconds for the command")
    run.add_argument("--pull", choices=["missing", "never", "always"], default="missing")

    ps = sub.add_parser("ps", help="list the sandboxes on this host")
    ps.add_argument("-q", "--quiet", action="store_true", help="only ids")

    rm = sub.add_parser("rm", help="remove sandboxes by id")
    rm.add_argument("ids", nargs="+")

    sub.add_parser("version", help="print the version")
    add_env_parser(sub)
    add_host_parsers(sub)
    add_lifecycle_parsers(sub)
    add_pool_parser(sub)
    return parser


def _env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"rock: --env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


async def _run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit("rock run: give the command after --, e.g. rock run python:3.11 -- ls /")
    config = SandboxConfig(
        image=args.image,
        cpus=args.cpus,
        memory=args.memory,
        network=args.network,
        env=_env(args.env),
        workdir=args.workdir,
        pull=args.pull,
    )
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    async with Sandbox(config) as sb:
        result = await sb.arun(command, timeout=args.timeout, on_output=write)
    if result.truncated:
        print(f"rock: output truncated at {len(result.output_bytes)} bytes", file=sys.stderr)
    if result.timed_out:
        print(f"rock: command timed out after {args.timeout:g} s", file=sys.stderr)
        return 124
    return result.exit_code if result.exit_code is not None else EXIT_ERROR


async def _ps(args: argparse.Namespace) -> int:
    async with open_cluster(["local"], admin=True) as cluster:
        found = await cluster.list_host_sandboxes()
    if args.quiet:
        for info in found:
            print(info.sandbox_id)
        return 0
    rows = [("SANDBOX", "IMAGE", "STATE", "AGE", "OWNER")]
    now = time.time()
    for info in sorted(found, key=lambda i: i.created_at):
        rows.append(
            (
                info.sandbox_id,
                info.image,
                info.state,
                duration(now - info.created_at, compact=True),
                info.owner,
            )
        )
    print_table(rows)
    return 0


async def _rm(args: argparse.Namespace) -> int:
    failed = 0
    async with open_cluster(["local"], admin=True) as cluster:
        for sandbox_id in args.ids:
            try:
                await cluster.remove_any(sandbox_id)
                print(sandbox_id)
            except RockError as exc:
                print(f"rock rm: {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


class _Log(logging.Handler):
    """The kit's log on stderr. An error record about a `RockError` waits for the command's
    end: if the command reports that same error, it is not said twice."""

    def __init__(self, level: int | str) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("rock: %(message)s"))
        self._held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and _errors_of(record):
            self._held.append(record)
            return
        self._write(record)

    def show_held(self, reported: BaseException | None) -> None:
        """Show the held records, but those about `reported` (the command says it itself)."""
        held, self._held = self._held, []
        for record in held:
            if not any(error is reported for error in _errors_of(record)):
                self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def _errors_of(record: logging.LogRecord) -> list[RockError]:
    args = record.args if isinstance(record.args, tuple) else ()
    return [arg for arg in args if isinstance(arg, RockError)]


@contextlib.contextmanager
def _logging_to_stderr() -> Iterator[_Log]:
    level = os.environ.get("ROCK_LOG_LEVEL", "WARNING").upper()
    handler = _Log(level if level in logging.getLevelNamesMapping() else "WARNING")
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(min(saved or logging.WARNING, handler.level))
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rock`."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        from rock_agent import AGENT_VERSION

        print(AGENT_VERSION)
        return 0
    if args.command == "env":
        return run_env(args)
    handler = (
        host_handler(args)
        or pool_handler(args)
        or lifecycle_handler(args)
        or {"run": _run, "ps": _ps, "rm": _rm}[args.command]
    )
    with _logging_to_stderr() as log:
        reported: RockError | None = None
        try:
            return anyio.run(handler, args)
        except RockError as exc:
            reported = exc
            log.show_held(reported)
            print(f"rock {args.command}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return 130
        finally:
            log.show_held(reported)


if __name__ == "__main__":
    sys.exit(main())
