"""`rock shell ID`: an interactive shell (or `--cmd`) in a sandbox, on a real pseudo-terminal.

Rules:
- When stdin is a terminal, it is put in raw mode for the session, so every key (Ctrl-C,
  Ctrl-Z, Ctrl-D, arrows) goes to the program in the sandbox, whose own terminal turns them
  into signals; the local terminal is restored on every way out (the end, an error, SIGTERM).
  The sandbox's terminal has this one's size, and follows it (SIGWINCH).
- When stdin is not a terminal, its bytes are typed at the sandbox's terminal as they come
  (no raw mode), and its end is a ``^D``: ``echo 'exit 3' | rock shell ID`` can be scripted.
- The command exits with the program's exit code; a failure of rock itself is 125, and
  SIGTERM (or Ctrl-C when stdin is not a terminal) 130, as every command's (`_cli_base`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Annotated

import anyio
import typer

from rock_core import AgentConnection, BadRequest, SandboxFailed, locate_sandbox

from ._cli_base import (
    ExitCode,
    Interrupts,
    fail,
    key_values,
    open_admin,
    resolve_ids,
    run_interruptible,
)
from ._terminal import Terminal, open_terminal

DEFAULT_SIZE = (24, 80)  # rows, columns when no terminal tells
READ_SIZE = 65536


def add_commands(app: typer.Typer) -> None:
    """Add `rock shell` to the command line."""
    app.command("shell")(shell)


def shell(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(metavar="ID")],
    cmd: Annotated[
        str | None,
        typer.Option("--cmd", metavar="CMD", help="a command line to run instead of the shell"),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("-e", "--env", metavar="KEY=VALUE", help="repeatable")
    ] = None,
    workdir: Annotated[str, typer.Option("-w", "--workdir", metavar="DIR")] = "",
) -> None:
    """Open an interactive shell in a running sandbox, on a real terminal (bash if the image
    has it, else sh); exits with the shell's exit code."""
    try:
        variables = key_values(env or [], "-e")
    except BadRequest as exc:
        raise fail(ctx, str(exc)) from None

    async def body(interrupts: Interrupts) -> int:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
            return await run_shell(conn, sandbox_id, cmd, variables, workdir)

    run_interruptible(ctx, body)


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal `fd`, or `DEFAULT_SIZE` if it is none (or says 0)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return DEFAULT_SIZE
    return (size.lines or DEFAULT_SIZE[0], size.columns or DEFAULT_SIZE[1])


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal `fd` in raw mode for the block, restored however the block ends."""
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run_shell(
    conn: AgentConnection, sandbox_id: str, cmd: str | None, env: dict[str, str], cwd: str
) -> int:
    """Run the terminal session with this process's stdin and stdout; its exit code."""
    stdin, stdout = _fd(sys.stdin, 0), _fd(sys.stdout, 1)
    interactive = os.isatty(stdin)
    size_from = stdout if os.isatty(stdout) else stdin
    rows, cols = terminal_size(size_from)
    if interactive and "TERM" in os.environ:
        env = {"TERM": os.environ["TERM"], **env}
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    async with await open_terminal(
        conn, sandbox_id, cmd, rows=rows, cols=cols, env=env, cwd=cwd
    ) as term:
        with raw_mode(stdin) if interactive else contextlib.nullcontext():
            code = await _session(term, stdin, stdout, size_from, interactive)
    if code is None:
        raise SandboxFailed(
            f"the program of the terminal in sandbox {sandbox_id} closed it but still runs"
        )
    return code if 0 <= code <= 255 else int(ExitCode.FAILED)


def _fd(stream: object, default: int) -> int:
    """The file descriptor of `stream` (the process's own `default` if it has none: a test's)."""
    try:
        fileno = getattr(stream, "fileno", None)
        return int(fileno()) if fileno is not None else default
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return default


async def _session(
    term: Terminal, stdin: int, stdout: int, size_from: int, interactive: bool
) -> int | None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_type_input, term, stdin, interactive)
        if interactive:
            tg.start_soon(_follow_size, term, size_from)
        while data := await term.receive():
            await _write_all(stdout, data)
        code = await term.wait()
        tg.cancel_scope.cancel()
    return code


async def _type_input(term: Terminal, fd: int, interactive: bool) -> None:
    """Carry stdin to the terminal as it comes; its end is a ``^D`` (not from a terminal)."""
    mode = os.fstat(fd).st_mode
    # A terminal, pipe or socket is waited on; a file or /dev/null is always readable.
    waits = os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
    while True:
        if waits:
            await anyio.wait_readable(fd)
        data = os.read(fd, READ_SIZE)
        if not data:
            if not interactive:
                await term.close_input()
            return
        await term.send(data)


async def _follow_size(term: Terminal, fd: int) -> None:
    with anyio.open_signal_receiver(signal.SIGWINCH) as changes:
        async for _ in changes:
            await term.resize(*terminal_size(fd))


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await anyio.wait_writable(fd)


__all__ = ["add_commands", "raw_mode", "run_shell", "shell", "terminal_size"]
