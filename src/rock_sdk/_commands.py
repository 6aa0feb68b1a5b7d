"""The commands of one sandbox: its shell sessions, commands run in them, one-off programs.

Rules:
- `SandboxCommands` knows a sandbox only through its public view (`RunningSandbox`: id, state
  and cluster, read at each call), not how it was placed, borrowed or started; `Sandbox` owns
  that and delegates its command methods here.
- The set of open sessions is shared with the `Sandbox` (which clears it when the sandbox stops,
  restarts or is deleted, since sessions end with the container's processes): the default
  session is opened on first use and reopened once if its agent lost it.
- A call on a sandbox that was never started is a `BadRequest`, as every `Sandbox` call is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from rock_core import (
    AlreadyExists,
    BadRequest,
    Cluster,
    CommandFailed,
    SandboxNotFound,
    SandboxState,
    SessionNotFound,
)
from rock_core.protocol import (
    CloseSession,
    CommandReply,
    CreateSession,
    Done,
    ExecReply,
    Execute,
    Output,
    Reply,
    Request,
    RunCommand,
    check_held_output,
    raise_for_reply,
)
from rock_core.protocol import CommandResult as WireCommandResult

from . import _arguments as args
from ._interactive import InteractiveProcess
from ._results import CommandResult, ExecResult, why_failed

R = TypeVar("R", bound=Reply)

DEFAULT_SESSION = "default"
DEFAULT_OUTPUT_LIMIT = 1 << 20


class RunningSandbox(Protocol):
    """What commands need of a sandbox: its public view (see `Sandbox`)."""

    @property
    def sandbox_id(self) -> str: ...

    @property
    def state(self) -> SandboxState: ...

    @property
    def cluster(self) -> Cluster: ...


class SandboxCommands:
    """Sessions and commands of `sandbox`; `memory` (bytes) explains an out-of-memory exit."""

    def __init__(self, sandbox: RunningSandbox, sessions: set[str], memory: int) -> None:
        self._sandbox = sandbox
        self.sessions = sessions
        self.memory = memory

    async def call(self, request: Request, expect: type[R]) -> R:
        """Send a request about the sandbox and return its reply."""
        if self._sandbox.state is SandboxState.PENDING:
            raise BadRequest("the sandbox has not been started")
        return await self._sandbox.cluster.call(self._sandbox.sandbox_id, request, expect)

    async def create_session(
        self, session: str = DEFAULT_SESSION, *, env: dict[str, str] | None = None, cwd: str = ""
    ) -> str:
        """Start a named, stateful shell; cwd, variables and functions persist in it."""
        await self.call(
            CreateSession(
                sandbox_id=self._sandbox.sandbox_id,
                session=session,
                env=args.env(env),
                cwd=cwd,
            ),
            Done,
        )
        self.sessions.add(session)
        return session

    async def close_session(self, session: str) -> None:
        """End a session's shell and whatever it still runs."""
        self.sessions.discard(session)
        await self.call(CloseSession(sandbox_id=self._sandbox.sandbox_id, session=session), Done)

    async def run(
        self,
        cmd: str,
        session: str | None = None,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        check: bool = False,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        on_output: Callable[[bytes], Awaitable[None] | None] | None = None,
    ) -> CommandResult:
        """Run `cmd` in a session (the default one if none is named) and return its result.

        `timeout` bounds the whole command and `idle_timeout` the time without output; either
        interrupts the command (the session survives) and sets `timed_out`/`idle_timed_out`.
        With `check`, a non-zero exit raises `CommandFailed` carrying the result. Output comes
        back in the result, so without `on_output` `output_limit` is at most 15 MiB (all of the
        output is in `output_path`); with `on_output` it streams and may be larger.
        """
        args.callback(on_output, "on_output", "each chunk of output (bytes)")
        args.flag(check, "check")
        check_held_output(output_limit, streamed=on_output is not None)
        name = await self._session_for(session)
        try:
            wire, streamed = await self._run(
                cmd, name, timeout, idle_timeout, output_limit, on_output
            )
        except SessionNotFound:
            if session is not None:
                raise
            # The default session is gone (its agent restarted): the command never ran, so
            # open the session again and run it there.
            self.sessions.discard(name)
            name = await self._session_for(None)
            wire, streamed = await self._run(
                cmd, name, timeout, idle_timeout, output_limit, on_output
            )
        result = CommandResult.from_wire(wire, bytes(streamed) if on_output else None)
        if result.session_closed:
            self.sessions.discard(name)
            if self._sandbox.state in (SandboxState.DELETING, SandboxState.DELETED):
                raise SandboxNotFound(
                    f"sandbox {self._sandbox.sandbox_id} was deleted while command {cmd!r} ran",
                    sandbox_id=self._sandbox.sandbox_id,
                )
        if check and not result.ok:
            why = why_failed(result, self.memory)
            raise CommandFailed(f"command {cmd!r} {why}", result=result, exit_code=result.exit_code)
        return result

    async def _run(
        self,
        cmd: str,
        name: str,
        timeout: float | None,
        idle_timeout: float | None,
        output_limit: int,
        on_output: Callable[[bytes], Awaitable[None] | None] | None,
    ) -> tuple[WireCommandResult, bytearray]:
        request = RunCommand(
            sandbox_id=self._sandbox.sandbox_id,
            session=name,
            command=cmd,
            timeout=timeout,
            idle_timeout=idle_timeout,
            output_limit=output_limit,
            stream=on_output is not None,
        )
        conn = self._sandbox.cluster.connection(self._sandbox.sandbox_id)
        streamed = bytearray()
        wire = None
        async with conn.open_request(request) as answers:
            async for message in answers:
                if isinstance(message, Output):
                    streamed += message.data
                    if on_output is not None:
                        maybe = on_output(message.data)
                        if maybe is not None:
                            await maybe
                elif isinstance(message, Reply):
                    wire = raise_for_reply(message, CommandReply, request).result
        assert wire is not None
        return wire, streamed

    async def _session_for(self, session: str | None) -> str:
        name = DEFAULT_SESSION if session is None else session
        if session is None and name not in self.sessions:
            try:
                await self.create_session(name)
            except AlreadyExists:
                self.sessions.add(name)  # an adopted sandbox whose agent kept it
        return name

    async def start_interactive(
        self, cmd: str, session: str | None = None, *, output_limit: int = DEFAULT_OUTPUT_LIMIT
    ) -> InteractiveProcess:
        """Start a program that reads input (a REPL, an installer's prompts) in a session.

        Drive it with `expect`, `send`/`sendline`, `interrupt` and `wait`.
        """
        check_held_output(output_limit, streamed=False)  # `wait` returns it in one reply
        name = await self._session_for(session)
        await self.call(
            RunCommand(
                sandbox_id=self._sandbox.sandbox_id,
                session=name,
                command=cmd,
                interactive=True,
                output_limit=output_limit,
            ),
            Done,
        )
        return InteractiveProcess(self._sandbox.cluster, self._sandbox.sandbox_id, name)

    async def execute(
        self,
        argv: Sequence[str],
        *,
        cwd: str = "",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | str = b"",
        check: bool = False,
    ) -> ExecResult:
        """Run a one-off command (no shell state) with stdout and stderr apart."""
        if isinstance(argv, str):
            raise BadRequest("execute takes an argv list; use arun() for a shell command line")
        argv = args.strings(argv, "argv", "['ls', '-l']")
        args.flag(check, "check")
        result = ExecResult.from_wire(
            (
                await self.call(
                    Execute(
                        sandbox_id=self._sandbox.sandbox_id,
                        argv=list(argv),
                        cwd=cwd,
                        env=args.env(env),
                        timeout=timeout,
                        stdin=args.data(stdin, "stdin"),
                    ),
                    ExecReply,
                )
            ).result
        )
        if check and not result.ok:
            why = why_failed(result, self.memory)
            raise CommandFailed(f"{argv[0]!r} {why}", result=result, exit_code=result.exit_code)
        return result
