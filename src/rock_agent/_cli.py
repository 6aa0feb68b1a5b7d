"""`rock-agent`: serve the protocol on stdio or a unix socket; print the version.

Rules:
- Serving starts at once, engine or not; the background work is `open_agent`'s (read its
  rules). A stdio agent keeps a wait for the engine out of its log: its client hears it in
  the handshake.
- SIGTERM and SIGINT stop the agent; SIGUSR1 prints every task's stack.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from rock_core import BadRequest
from rock_core.serving import MAX_LEASE, SECONDS_RULE, is_seconds

from ._admit_options import add_admission_options, limits_of
from ._ensure import EXIT_UNSAFE, agent_answers, ensure_running, socket_problem
from ._install import add_commands, notify_ready, run_command
from ._listen import serve_socket, stdio_peer
from ._logging import configure
from ._metrics_serve import open_metrics_port
from ._open import open_agent
from ._runtime_choice import RUNTIME_CHOICES, open_runtime, pick_runtime
from ._server import AgentServer
from ._stdio import StdioStream
from ._unit import group_id
from ._version import AGENT_VERSION

log = logging.getLogger("rock_agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rock-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the rock protocol")
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="on stdin/stdout (one connection)")
    where.add_argument("--socket", metavar="PATH", help="on a unix socket (owner-only access)")
    _common_options(serve)
    serve.add_argument(
        "--socket-group",
        metavar="GROUP",
        help="socket mode: let this group connect too (mode 0660 instead of 0600)",
    )
    serve.add_argument("--reap-interval", type=seconds_arg(), default=30.0)
    add_admission_options(serve)
    serve.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve metrics on 127.0.0.1:PORT too"
    )
    serve.add_argument(
        "--idle-exit",
        type=seconds_arg(zero="never"),
        default=0.0,
        metavar="SECONDS",
        help="socket mode: exit after this long with no connection and no sandbox (0: never)",
    )
    ensure = commands.add_parser(
        "ensure",
        help="make sure a socket agent runs (start one in the background if not); print its "
        "socket as JSON",
    )
    ensure.add_argument("--socket", metavar="PATH", default=default_socket_path())
    _common_options(ensure)
    ensure.add_argument(
        "--idle-exit", type=seconds_arg(zero="never"), default=600.0, metavar="SECONDS"
    )
    commands.add_parser("version", help="print the agent version")
    add_commands(commands)
    return parser


def _common_options(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    parser.add_argument(
        "--host-id",
        default=env.get("ROCK_AGENT_HOST_ID") or env.get("ROCK_HOST_ID") or socket.gethostname(),
        help="this host's name in the cluster and in container labels",
    )
    parser.add_argument("--docker", default=env.get("DOCKER_HOST"), help="engine URL")
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        default=env.get("ROCK_AGENT_RUNTIME", "auto"),
        help="the engine: docker, podman, or auto: by the URL, then which socket is there",
    )
    parser.add_argument("--log-level", default=env.get("ROCK_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--lease",
        type=seconds_arg(maximum=MAX_LEASE, default_from="ROCK_AGENT_LEASE"),
        # A string: argparse checks it with `type` like a value given on the command line.
        default=env.get("ROCK_AGENT_LEASE", "60"),
        metavar="SECONDS",
        help="how long a disconnected owner's sandboxes are kept (socket mode; default:"
        " $ROCK_AGENT_LEASE, else 60)",
    )


def seconds_arg(
    *, zero: str = "", maximum: float = math.inf, default_from: str = ""
) -> Callable[[str], float]:
    """An argparse `type` for a time in seconds: positive and finite (NaN and inf are refused,
    as by `rock_core.serving.is_seconds`), at most `maximum`; 0 too when `zero` says what it
    means. A bad value exits with argparse's one-line error and code 2."""
    rule = SECONDS_RULE + (f" (or 0: {zero})" if zero else "")
    if maximum < math.inf:
        rule += f" up to {maximum:g}"
    if default_from:
        rule += f" (${default_from} sets the default)"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (zero and value == 0) or (is_seconds(value) and value <= maximum):
            return value
        raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")

    return parse


def default_socket_path() -> str:
    """Where a socket agent listens unless told otherwise (the systemd unit's path for root)."""
    custom = os.environ.get("ROCK_AGENT_SOCKET")
    if custom:
        return custom
    if os.geteuid() == 0:
        return "/run/rock-agent/agent.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return f"{runtime}/rock-agent/agent.sock"
    return f"/tmp/rock-agent-{os.geteuid()}/agent.sock"


def _dump_tasks() -> None:
    """SIGUSR1: print every asyncio task's stack to stderr (for debugging a stuck agent)."""
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


async def _serve(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    async with (
        open_runtime(
            *pick_runtime(args.runtime, args.docker, os.environ, euid=os.geteuid()), args.host_id
        ) as runtime,
        open_agent(
            runtime,
            reap_interval=args.reap_interval,
            lease=args.lease,
            reap_on_disconnect=bool(args.stdio),
            quiet=bool(args.stdio),
            limits=limits_of(args),
        ) as server,
        open_metrics_port(server, args.metrics_port),
        anyio.create_task_group() as tg,
    ):
        # Serving starts at once; adopting and reaping (`open_agent`) never delay a handshake.
        tg.start_soon(_stop_on_signals, tg.cancel_scope)
        if args.socket and args.idle_exit > 0:
            tg.start_soon(_exit_when_idle, server, args.idle_exit, tg.cancel_scope)
        try:
            if args.stdio:
                await server.serve(await StdioStream.open(), stdio_peer())
                await server.linger()
            else:
                await serve_socket(
                    Path(args.socket),
                    server.serve,
                    group=args.socket_gid,
                    on_listening=notify_ready,
                )
        finally:
            tg.cancel_scope.cancel()


async def _exit_when_idle(server: AgentServer, idle: float, scope: anyio.CancelScope) -> None:
    while True:
        await anyio.sleep(min(idle, 5.0))
        since = server.idle_since()
        if since is not None and time.monotonic() - since >= idle:
            log.info("exiting: idle for %.0f s with no sandbox", idle)
            scope.cancel()
            return


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("stopping on signal %s", signal.Signals(signum).name)
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rock-agent`."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(AGENT_VERSION)
        return 0
    if args.command == "ensure":
        return ensure_running(args)
    if args.command in ("install", "uninstall"):
        return run_command(args)
    if args.runtime not in RUNTIME_CHOICES:  # from $ROCK_AGENT_RUNTIME, which argparse trusts
        print(
            f"rock-agent serve: --runtime is one of {', '.join(RUNTIME_CHOICES)}", file=sys.stderr
        )
        return 2
    args.socket_gid = None
    if args.socket_group is not None:
        if args.stdio:
            print("rock-agent serve: --socket-group needs --socket", file=sys.stderr)
            return 2
        try:
            args.socket_gid = group_id(args.socket_group)
        except BadRequest as exc:
            print(f"rock-agent serve: {exc}", file=sys.stderr)
            return 2
        if os.geteuid() != 0 and args.socket_gid not in os.getgroups():
            print(
                f"rock-agent serve: only root or a member of group {args.socket_group!r} "
                "can hand it the socket",
                file=sys.stderr,
            )
            return 2
    problem = socket_problem(Path(args.socket)) if args.socket else None
    if problem is not None:
        print(f"rock-agent serve: {problem}", file=sys.stderr)
        return EXIT_UNSAFE
    if args.socket and agent_answers(Path(args.socket)):
        # Never take the socket of a live agent: it would keep running, unreachable.
        print(
            f"rock-agent serve: an agent already listens on {args.socket}; stop it first "
            "(an on-demand agent exits by itself once idle)",
            file=sys.stderr,
        )
        return 1
    configure(args.log_level)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
