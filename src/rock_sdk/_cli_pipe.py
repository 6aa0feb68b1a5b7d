"""`rock run` and `rock exec`: a command in a sandbox as a well-behaved member of a pipeline.

How it runs. A session shell merges stderr into stdout, so the command's stderr goes to a fifo
in the sandbox that a second session reads with `cat`: both sessions stream, one to our
stdout and one to our stderr, byte for byte. Our stdin, when it is not a terminal, is read to
its end and written to a file in the sandbox that the command reads. Each call uses sessions
of its own (an agent belongs to one `rock` process, so its sessions end with it); a named
session (``--session NAME``) is the working directory and exported variables saved in the
sandbox after each call (`SESSIONS_DIR`) and restored before the next.

Rules:
- The exit code is the command's own; 124 when it ran out of its timeout; 125 when rock failed
  (also when output passed the most rock streams, unless ``--max-output`` asked for a cut).
- Ctrl-C cancels the streaming requests (the agent interrupts the command); the caller's
  cleanup (closing the sessions, removing the sandbox) still runs.
- Nothing is written to stdout but the command's stdout.
"""

from __future__ import annotations

import re
import secrets
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import anyio

from rock_core import AgentConnection, BadRequest, RockError
from rock_core.protocol import (
    MAX_DATA,
    CloseSession,
    CommandReply,
    CommandResult,
    CreateSession,
    Done,
    ExecReply,
    Execute,
    Output,
    Reply,
    RunCommand,
    WriteFile,
    raise_for_reply,
)

from . import _transfer
from ._cli_base import ExitCode, Interrupts, say_error
from ._cli_format import duration

STREAM_LIMIT = 1 << 30  # the most output one streamed command may have (the wire's limit)
SESSIONS_DIR = "/tmp/.rock/sessions"  # where named sessions keep their state in a sandbox
DRAIN_TIMEOUT = 10.0  # seconds stderr may go on after the command ended (a background writer)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Piped:
    """One command to run: its argv (one word is a shell command line) and options."""

    argv: Sequence[str]
    where: str  # "rock run" or "rock exec", for messages
    workdir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    max_output: int | None = None
    session: str | None = None
    stdin: bytes | None = None

    def command(self) -> str:
        """The shell command line: one word as it is, several quoted as argv."""
        if not self.argv:
            raise BadRequest("give the command after --, e.g. -- ls /")
        return self.argv[0] if len(self.argv) == 1 else shlex.join(self.argv)


def read_stdin() -> bytes | None:
    """Our stdin to forward: all of it when it is not a terminal, else None."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.buffer.read()


def script(piped: Piped, tmp: str, has_stdin: bool) -> str:
    """The lines the command session runs (see the module's rules)."""
    if piped.session is not None and not _NAME.match(piped.session):
        raise BadRequest(f"--session {piped.session!r}: use letters, digits, '.', '_' or '-'")
    steps = []
    if piped.workdir:
        steps.append(f"cd {shlex.quote(piped.workdir)}")
    for key, value in piped.env.items():
        if not _KEY.match(key):
            raise BadRequest(f"-e {key}=...: {key!r} is not a variable name")
        steps.append(f"export {key}={shlex.quote(value)}")
    steps.append("{\n" + piped.command() + "\n}")
    body = " && ".join(steps)
    redirect = f"<{tmp}/in" if has_stdin else "</dev/null"
    if piped.session is None:
        return f"( {body} ) {redirect} 2>{tmp}/err"
    state = shlex.quote(f"{SESSIONS_DIR}/{piped.session}")
    restore = f'if [ -f {state} ]; then . {state}; cd "$PWD"; fi && '
    save = f"export -p >{state}.new 2>/dev/null && mv -f {state}.new {state} 2>/dev/null"
    return f"{{ {restore}{body}\n}} {redirect} 2>{tmp}/err; __rock_rc=$?; {save}; (exit $__rock_rc)"


async def run_piped(
    conn: AgentConnection,
    sandbox_id: str,
    piped: Piped,
    interrupts: Interrupts,
    *,
    cleanup: bool = True,
) -> int:
    """Run `piped` in the sandbox with our stdout, stderr and stdin; its exit code."""
    token = secrets.token_hex(6)
    tmp, main, errs = f"/tmp/.rock-cli-{token}", f"rock-cli-{token}", f"rock-cli-{token}-err"
    lines = script(piped, tmp, piped.stdin is not None)
    opened: list[str] = []
    try:
        for name in (main, errs):
            await conn.call(CreateSession(sandbox_id=sandbox_id, session=name), Done)
            opened.append(name)
        prepare = f"mkdir -p {tmp} {SESSIONS_DIR} && mkfifo {tmp}/err"
        ready = await _run(conn, sandbox_id, main, prepare, None, MAX_DATA, None)
        if ready.exit_code != 0:
            output = ready.output.decode(errors="replace").strip()
            raise RockError(f"cannot prepare the sandbox for the command: {output}")
        if piped.stdin is not None:
            await _write(conn, sandbox_id, f"{tmp}/in", piped.stdin)
        limit = piped.max_output if piped.max_output is not None else STREAM_LIMIT
        result: CommandResult | None = None
        with interrupts.cancels():
            async with anyio.create_task_group() as tg:
                err_result: list[CommandResult] = []
                drained = anyio.Event()

                async def read_errors() -> None:
                    cat = f"cat {tmp}/err"
                    err_result.append(
                        await _run(conn, sandbox_id, errs, cat, None, limit, _to_stderr)
                    )
                    drained.set()

                tg.start_soon(read_errors)
                result = await _run(conn, sandbox_id, main, lines, piped.timeout, limit, _to_stdout)
                with anyio.move_on_after(DRAIN_TIMEOUT):
                    await drained.wait()
                tg.cancel_scope.cancel()
        if result is None:
            return ExitCode.INTERRUPTED
        return _outcome(piped, result, err_result[0] if err_result else None)
    finally:
        if cleanup:
            with anyio.CancelScope(shield=True), anyio.move_on_after(DRAIN_TIMEOUT):
                await _clean(conn, sandbox_id, opened, tmp)


def _outcome(piped: Piped, result: CommandResult, errors: CommandResult | None) -> int:
    if result.timed_out or result.idle_timed_out:
        assert piped.timeout is not None
        say_error(piped.where, f"the command timed out after {duration(piped.timeout)}")
        return ExitCode.TIMED_OUT
    cut = result.truncated or (errors is not None and errors.truncated)
    if cut and piped.max_output is not None:
        say_error(piped.where, f"output cut at {piped.max_output} bytes (--max-output)")
    elif cut:
        say_error(piped.where, f"output passed {STREAM_LIMIT >> 30} GiB, the most rock streams")
        return ExitCode.FAILED
    if result.exit_code is None:
        say_error(piped.where, "the command ended without an exit code")
        return ExitCode.FAILED
    return result.exit_code


async def _run(
    conn: AgentConnection,
    sandbox_id: str,
    session: str,
    command: str,
    timeout: float | None,
    limit: int,
    sink: Callable[[bytes], None] | None,
) -> CommandResult:
    request = RunCommand(
        sandbox_id=sandbox_id,
        session=session,
        command=command,
        timeout=timeout,
        output_limit=limit,
        stream=sink is not None,
    )
    async with conn.open_request(request) as answers:
        async for message in answers:
            if isinstance(message, Output) and sink is not None:
                sink(message.data)
            elif isinstance(message, Reply):
                return raise_for_reply(message, CommandReply, request).result
    raise RockError(f"the agent went away while {command!r} ran")


def _to_stdout(data: bytes) -> None:
    _emit(sys.stdout.buffer, data)


def _to_stderr(data: bytes) -> None:
    _emit(sys.stderr.buffer, data)


def _emit(stream: BinaryIO, data: bytes) -> None:
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:
        pass  # the reader left (`| head`): the rest of the output has nowhere to go


async def _write(conn: AgentConnection, sandbox_id: str, path: str, data: bytes) -> None:
    if len(data) <= MAX_DATA:
        await conn.call(WriteFile(sandbox_id=sandbox_id, path=path, data=data), Done)
        return
    with tempfile.NamedTemporaryFile(prefix="rock-stdin-") as spool:
        spool.write(data)
        spool.flush()
        await _transfer.upload(conn, sandbox_id, spool.name, path)


async def _clean(conn: AgentConnection, sandbox_id: str, sessions: list[str], tmp: str) -> None:
    for name in sessions:
        try:
            await conn.call(CloseSession(sandbox_id=sandbox_id, session=name), Done)
        except RockError:
            pass  # gone with an interrupted command's shell: nothing left to close
    try:
        await conn.call(Execute(sandbox_id=sandbox_id, argv=["rm", "-rf", tmp]), ExecReply)
    except RockError:
        pass  # the sandbox was removed meanwhile
