"""`rock run` and `rock exec`: a command in a sandbox as a well-behaved member of a pipeline.

How it runs. One streamed one-off exec (`ExecuteStreamed`): our stdin goes to the command's
stdin as it arrives, and its stdout and stderr come back apart, each to ours, byte for byte,
both ways under credit so memory stays bounded. The command line runs in bash when the image
has it, else in its ``sh``. A named session (``--session NAME``) is the working directory
and exported variables saved in the sandbox after each call (`SESSIONS_DIR`) and restored
before the next.

Rules:
- The exit code is the command's own; 124 when it ran out of its timeout; 125 when rock failed
  (an agent too old to stream is told to upgrade).
- Our stdin (typed or piped, unless ``--no-stdin``) is read only as fast as the command takes
  it; its end closes the command's stdin; the command ending first stops the reading.
- Ctrl-C cancels the request (the agent kills the command); the caller's cleanup (removing the
  sandbox) still runs.
- Nothing is written to stdout but the command's stdout. A reader of ours that leaves
  (``| head``) ends the command, and we exit 141, as a writer killed by SIGPIPE does.
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from rock_core import AgentConnection, BadRequest, RockError
from rock_core.protocol import (
    EXEC_STREAM,
    ExecReply,
    ExecResult,
    ExecuteStreamed,
    ProcessOutput,
    Reply,
    StreamData,
    raise_for_reply,
)

from ._cli_base import ExitCode, Interrupts, emit, say_error
from ._cli_format import duration
from ._cli_stdin import CHUNK, Stdin, read_stdin
from ._streamed import one_error

SESSIONS_DIR = "/tmp/.rock/sessions"  # where named sessions keep their state in a sandbox
# Runs the command line (its first argument) in bash when the image has it, else in sh.
SHELL = 'if command -v bash >/dev/null 2>&1; then exec bash -c "$1"; fi; exec /bin/sh -c "$1"'
SIGPIPE_EXIT = 128 + signal.SIGPIPE  # a shell's code for a writer whose reader left
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
    stdin: Stdin | None = None

    def command(self) -> str:
        """The shell command line: one word as it is, several quoted as argv."""
        if not self.argv:
            raise BadRequest("give the command after --, e.g. -- ls /")
        return self.argv[0] if len(self.argv) == 1 else shlex.join(self.argv)


def script(piped: Piped) -> str:
    """The shell command line the exec runs (see the module's rules)."""
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
    if piped.session is None:
        return body
    state = shlex.quote(f"{SESSIONS_DIR}/{piped.session}")
    restore = f'if [ -f {state} ]; then . {state}; cd "$PWD"; fi && '
    # Saved on every way out, an `exit` in the command too.
    save = (
        f"__rock_rc=$?; mkdir -p {shlex.quote(SESSIONS_DIR)} && export PWD && "
        f"export -p >{state}.new 2>/dev/null && mv -f {state}.new {state} 2>/dev/null; "
        "exit $__rock_rc"
    )
    return f"trap {shlex.quote(save)} EXIT; {restore}{body}"


async def run_piped(
    conn: AgentConnection, sandbox_id: str, piped: Piped, interrupts: Interrupts
) -> int:
    """Run `piped` in the sandbox with our stdout, stderr and stdin; its exit code."""
    conn.require(EXEC_STREAM, "stream a command's input and output (rock run, rock exec)")
    request = ExecuteStreamed(
        sandbox_id=sandbox_id,
        argv=["/bin/sh", "-c", SHELL, "rock", script(piped)],
        timeout=piped.timeout,
        stdin=piped.stdin is not None,
        output_limit=piped.max_output,
    )
    result: ExecResult | None = None
    with interrupts.cancels():
        result = await stream_exec(conn, request, piped.stdin)
    if result is None:
        return ExitCode.INTERRUPTED
    return _outcome(piped, result)


async def stream_exec(
    conn: AgentConnection, request: ExecuteStreamed, stdin: Stdin | None
) -> ExecResult:
    """Send `request`, feed it `stdin` under credit, pass its output to ours; its result."""
    with one_error():
        async with conn.open_request(request) as answers, anyio.create_task_group() as tg:
            await conn.grant(request.id)
            if stdin is not None:
                tg.start_soon(_send_stdin, conn, request.id, stdin)
            async for message in answers:
                if isinstance(message, ProcessOutput):
                    out = sys.stdout.buffer if message.stream == "stdout" else sys.stderr.buffer
                    if not emit(out, message.data):
                        # Our reader left (`| head`): the request is dropped (the agent kills
                        # the command) and we end as a writer killed by SIGPIPE would.
                        tg.cancel_scope.cancel()
                        return ExecResult(
                            stdout=b"", stderr=b"", exit_code=SIGPIPE_EXIT, duration=0.0
                        )
                    await conn.grant(request.id, 1)
                elif isinstance(message, Reply):
                    tg.cancel_scope.cancel()  # the command ended: the rest of stdin is not read
                    return raise_for_reply(message, ExecReply, request).result
    raise RockError(f"the agent went away while {request.argv[-1]!r} ran")


async def _send_stdin(conn: AgentConnection, request_id: int, stdin: Stdin) -> None:
    # Every chunk, the end marker too, waits for credit: the agent takes none before it is
    # ready for them.
    gate = conn.gate(request_id)
    try:
        try:
            async for chunk in stdin.chunks():
                await gate.take()
                chunk += stdin.ready(CHUNK - len(chunk))
                await conn.send(StreamData(id=request_id, data=chunk))
        except OSError as exc:  # our stdin failed: the command gets end of file
            say_error("rock", f"reading stdin: {exc}")
        await gate.take()
        await conn.send(StreamData(id=request_id, data=b"", end=True))
    except RockError:
        pass  # the link broke: the reply reader says so


def _outcome(piped: Piped, result: ExecResult) -> int:
    if result.timed_out:
        assert piped.timeout is not None
        say_error(piped.where, f"the command timed out after {duration(piped.timeout)}")
        return ExitCode.TIMED_OUT
    if result.truncated and piped.max_output is not None:
        say_error(piped.where, f"output cut at {piped.max_output} bytes (--max-output)")
    if result.exit_code is None:
        say_error(piped.where, "the command ended without an exit code")
        return ExitCode.FAILED
    return result.exit_code


__all__ = ["SESSIONS_DIR", "Piped", "read_stdin", "run_piped", "script", "stream_exec"]
