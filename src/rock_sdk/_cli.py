"""`rock`: run commands in sandboxes, copy files, list and drive sandboxes, images, pools, envs.

Every command uses an embedded core, with a local agent or the agents of the configured hosts
(`_cli_config`: ``--config``, ``--hosts``, ``$ROCK_HOSTS``): there is no server to start. The
command line is typer (which carries its own click); `_cli_base` holds what every command
shares (the exit-code table, errors, Ctrl-C, typo suggestions, ids by prefix) and
`_cli_format` how things are shown (tables or ``--json`` from the same rows).

Rules:
- `main` is the entry point: it returns an `ExitCode` (or a command's own code) and never
  lets a parser's exception out; a usage error is one line on stderr and exit 125.
- This module holds the commands that run things in sandboxes (`run`, `exec`, `cp`) and the
  listing of sandboxes (`ps`, alias `ls`); the others live in their own modules and are added
  here with their `add_commands` function or sub-app.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import typer
from typer.exceptions import TyperException

from rock_core import BadRequest, locate_sandbox
from rock_core.protocol import ExecReply, Execute

from . import _cli_checkpoint, _cli_config, _cli_events, _cli_logs, _transfer
from ._cli_base import (
    ExitCode,
    Interrupts,
    fail,
    key_values,
    open_admin,
    resolve_ids,
    run_async,
    run_interruptible,
    say_error,
)
from ._cli_format import parse_duration, parse_size, show_rows, size_text
from ._cli_host import add_commands as add_host_commands
from ._cli_host import images_app
from ._cli_jobs import jobs_app
from ._cli_lazy import add_lazy_groups
from ._cli_lifecycle import add_commands as add_lifecycle_commands
from ._cli_metrics import add_commands as add_metrics_commands
from ._cli_network import Allow, AllowDns, network_choice
from ._cli_pause import add_commands as add_pause_commands
from ._cli_pipe import Piped, read_stdin, run_piped
from ._cli_pool import pool_app
from ._cli_progress import BIG_TRANSFER, NoBar, progress_bar
from ._cli_shell import add_commands as add_shell_commands
from ._cli_top import add_commands as add_top_commands

app = typer.Typer(
    help=__doc__.split("\n", 1)[0],
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

_COMMAND_CONTEXT = {"allow_interspersed_args": False}  # options after IMAGE/ID are the command's


def _version() -> str:
    from rock_agent import AGENT_VERSION

    return AGENT_VERSION


def _show_version(value: bool) -> None:
    if value:
        print(_version())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="the config file (default: $ROCK_CONFIG, else ~/.config/rock/config.toml)",
        ),
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option(
            "--hosts",
            metavar="HOST,...",
            help="the hosts to reach (default: $ROCK_HOSTS, else the config's, else local)",
        ),
    ] = None,
) -> None:
    """Run commands in sandboxes, copy files, list and drive sandboxes, images, pools, envs."""
    _cli_config.choose(config, hosts)


def version() -> None:
    """Print the version."""
    print(_version())


def _argv(argv: list[str] | None) -> list[str]:
    argv = list(argv or [])
    return argv[1:] if argv[:1] == ["--"] else argv


Timeout = Annotated[
    str | None,
    typer.Option("--timeout", metavar="DURATION", help="for the command: 30, 30s, 5m, 2h"),
]
MaxOutput = Annotated[
    str | None,
    typer.Option(
        "--max-output",
        metavar="SIZE",
        help="cut stdout and stderr each after SIZE (512k, 10m); default: no cut",
    ),
]
NoStdin = Annotated[bool, typer.Option("--no-stdin", help="do not forward stdin (typed or piped)")]
Env = Annotated[
    list[str] | None, typer.Option("-e", "--env", metavar="KEY=VALUE", help="repeatable")
]
Command = Annotated[list[str] | None, typer.Argument(metavar="-- COMMAND [ARG...]")]


@app.command("run", context_settings=_COMMAND_CONTEXT)
def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE")],
    command: Command = None,
    cpus: Annotated[
        float | None, typer.Option(help="cpus for the sandbox (default: the config's, else 1)")
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(help="memory for the sandbox: 512m, 2g (default: the config's, else 1g)"),
    ] = None,
    network: Annotated[bool, typer.Option("--network", help="give the sandbox a network")] = False,
    allow: Allow = None,
    allow_dns: AllowDns = None,
    env: Env = None,
    workdir: Annotated[str, typer.Option("-w", "--workdir")] = "",
    timeout: Timeout = None,
    pull: Annotated[
        Literal["missing", "never", "always"], typer.Option(help="when to pull IMAGE")
    ] = "missing",
    max_output: MaxOutput = None,
    no_stdin: NoStdin = False,
) -> None:
    """Run a command in a fresh sandbox, then remove it (stdout, stderr, stdin and exit code
    pass through)."""
    argv = _argv(command)
    if not argv:
        raise fail(ctx, "give the command after --, e.g. rock run python:3.11 -- ls /")
    given = {k: v for k, v in (("cpus", cpus), ("memory", memory)) if v is not None}
    network_or_policy = network_choice(ctx, network, allow, allow_dns)
    settings = dict(network=network_or_policy, env=_pairs(ctx, env, "--env"), workdir=workdir)
    settings["pull"] = pull
    piped = _piped(ctx, argv, ctx.command_path, timeout, max_output, no_stdin)

    async def body(interrupts: Interrupts) -> int:
        sandbox = _cli_config.config().sandbox_config(image, **given, **settings)
        async with _cli_config.fresh_sandbox(sandbox) as sb:
            conn = sb.cluster.connection(sb.sandbox_id)
            return await run_piped(conn, sb.sandbox_id, piped, interrupts)

    run_interruptible(ctx, body)


@app.command("exec", context_settings=_COMMAND_CONTEXT)
def exec_(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(metavar="ID")],
    command: Command = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="NAME", help="keep cwd and exported variables between calls"
        ),
    ] = None,
    workdir: Annotated[str, typer.Option("-w", "--workdir")] = "",
    env: Env = None,
    timeout: Timeout = None,
    max_output: MaxOutput = None,
    no_stdin: NoStdin = False,
) -> None:
    """Run a command in a running sandbox (one-off, or in a named session)."""
    argv = _argv(command)
    if not argv:
        raise fail(ctx, "give the command after --, e.g. rock exec ID -- ls /")
    piped = _piped(ctx, argv, ctx.command_path, timeout, max_output, no_stdin)
    piped = replace(piped, workdir=workdir, env=_pairs(ctx, env, "-e"), session=session)

    async def body(interrupts: Interrupts) -> int:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
            return await run_piped(conn, sandbox_id, piped, interrupts)

    run_interruptible(ctx, body)


@app.command("cp")
def cp(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SRC")],
    target: Annotated[str, typer.Argument(metavar="DST")],
    quiet: NoBar = False,
) -> None:
    """Copy files or folders between a sandbox and here: rock cp ID:/path . / rock cp f ID:/p"""
    inside = [":" in part and not part.startswith(("/", ".")) for part in (source, target)]
    if inside == [True, False]:
        sandbox, remote = source.split(":", 1)
        local, download = target, True
    elif inside == [False, True]:
        sandbox, remote = target.split(":", 1)
        local, download = source, False
    else:
        raise fail(ctx, "give one path as ID:/path (in the sandbox) and one local path")

    async def body() -> None:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
            bar = progress_bar(quiet=quiet, at_least=BIG_TRANSFER)
            if download:
                into = Path(local)
                if into.is_dir():
                    into = into / Path(remote.rstrip("/")).name
                with bar as progress:
                    stat = await _transfer.download(conn, sandbox_id, remote, into, progress)
            else:
                into_path = remote
                probe = Execute(sandbox_id=sandbox_id, argv=["test", "-d", remote])
                if (await conn.call(probe, ExecReply)).result.exit_code == 0:
                    into_path = f"{remote.rstrip('/')}/{Path(local).resolve().name}"
                with bar as progress:
                    stat = await _transfer.upload(conn, sandbox_id, local, into_path, progress)
        what = "folder" if stat.is_dir else "file"
        print(f"copied {what} {stat.path} ({size_text(stat.size)})", file=sys.stderr)
        for skipped in stat.skipped:
            say_error("rock cp", f"skipped {skipped}")

    run_async(ctx, body)


Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="only ids")]
Json = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


def ps(ctx: typer.Context, quiet: Quiet = False, json: Json = False) -> None:
    """List the sandboxes on every host (all owners)."""

    async def body() -> None:
        async with open_admin() as cluster:
            found = await _cli_config.hosted_sandboxes(cluster)
        if quiet:
            for info in found:
                print(info.sandbox_id)
            return
        show_rows(found, _cli_config.SANDBOX_COLUMNS, json=json)

    run_async(ctx, body)


app.command("ps")(ps)
app.command("ls", hidden=True)(ps)
app.add_typer(images_app, name="images")
app.add_typer(pool_app, name="pool")
app.add_typer(jobs_app, name="jobs")
add_host_commands(app)
add_lifecycle_commands(app)
_cli_logs.add_commands(app)
add_metrics_commands(app)
add_top_commands(app)
add_pause_commands(app)
_cli_checkpoint.add_commands(app)
add_shell_commands(app)
_cli_events.add_commands(app)
app.command("version")(version)


def _pairs(ctx: typer.Context, pairs: list[str] | None, option: str) -> dict[str, str]:
    try:
        return key_values(pairs or [], option)
    except BadRequest as exc:
        raise fail(ctx, str(exc)) from None


def _piped(
    ctx: typer.Context,
    argv: list[str],
    where: str,
    timeout: str | None,
    max_output: str | None,
    no_stdin: bool,
) -> Piped:
    try:
        return Piped(
            argv=argv,
            where=where,
            timeout=None if timeout is None else parse_duration(timeout),
            max_output=None if max_output is None else parse_size(max_output, "--max-output"),
            stdin=None if no_stdin else read_stdin(),
        )
    except BadRequest as exc:
        raise fail(ctx, str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rock`: run the command line `argv` and return the exit code."""
    command = typer.main.get_command(app)
    add_lazy_groups(command, sys.argv[1:] if argv is None else argv)
    try:
        code = command.main(args=argv, prog_name="rock", standalone_mode=False)
    except TyperException as exc:  # a usage error: a mistyped command, option or value
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or "rock"
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group given no command: its help
            print(exc.format_message())
            return ExitCode.OK
        say_error(where, f"{exc.format_message()} (see '{where} --help')")
        return ExitCode.FAILED
    except typer.Abort:
        return ExitCode.INTERRUPTED
    return code if isinstance(code, int) else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
