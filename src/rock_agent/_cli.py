"""`rock-agent`: serve the protocol on stdio or a unix socket; print the version."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import aiodocker
import anyio

from ._docker import DockerRuntime
from ._logging import configure
from ._server import AgentServer
from ._stdio import StdioStream
from ._version import AGENT_VERSION

log = logging.getLogger("rock_agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rock-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the rock protocol")
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="on stdin/stdout (one connection)")
    where.add_argument("--socket", metavar="PATH", help="on a unix socket (owner-only access)")
    serve.add_argument("--host-id", default=os.environ.get("ROCK_HOST_ID") or socket.gethostname())
    serve.add_argument("--docker", default=os.environ.get("DOCKER_HOST"), help="engine URL")
    serve.add_argument("--log-level", default=os.environ.get("ROCK_LOG_LEVEL", "INFO"))
    serve.add_argument("--reap-interval", type=float, default=30.0)
    commands.add_parser("version", help="print the agent version")
    return parser


def _dump_tasks() -> None:
    """SIGUSR1: print every asyncio task's stack to stderr (for debugging a stuck agent)."""
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


async def _serve(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    docker = aiodocker.Docker(url=args.docker) if args.docker else aiodocker.Docker()
    try:
        server = AgentServer(DockerRuntime(docker, args.host_id), reap_interval=args.reap_interval)
        async with anyio.create_task_group() as tg:
            # Serving starts at once; adopting and reaping must never delay a handshake.
            tg.start_soon(server.reap_loop)
            tg.start_soon(_stop_on_signals, tg.cancel_scope)
            try:
                if args.stdio:
                    await server.serve(await StdioStream.open())
                else:
                    await _serve_socket(server, Path(args.socket))
            finally:
                # A short-lived client (`rock ps`) must not cut the start-up reap short.
                with anyio.move_on_after(60, shield=True):
                    await server.first_reap_done.wait()
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await server.aclose()
    finally:
        with anyio.CancelScope(shield=True):
            await docker.close()


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("stopping on signal %s", signal.Signals(signum).name)
            scope.cancel()
            return


async def _serve_socket(server: AgentServer, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)  # the socket is the owner's alone
    try:
        listener = await anyio.create_unix_listener(path)
    finally:
        os.umask(old)
    log.info("listening", extra={"socket": str(path)})
    async with listener:
        await listener.serve(server.serve)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rock-agent`."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(AGENT_VERSION)
        return 0
    configure(args.log_level)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
