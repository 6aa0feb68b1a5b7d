"""Commands in a sandbox: named shell sessions (`_shell`) and one-off commands.

Rules:
- Sessions live in the agent's memory, keyed by (sandbox id, name); the shells are processes in
  the container. A session whose shell has exited is reported closed once, then forgotten.
- The engine starts about 20 execs a second: at most `SESSION_OPENS` shells start at once per
  agent, so hundreds of sessions opened together queue here, not each on its own deadline.
"""

from __future__ import annotations

from typing import Protocol

import anyio

from rock_core._endpoint import Connection
from rock_core._errors import AlreadyExists, SessionNotFound
from rock_core._protocol import (
    CloseSession,
    CommandReply,
    CreateSession,
    Done,
    ExecReply,
    Execute,
    Expect,
    ExpectReply,
    Interrupt,
    Output,
    Reply,
    RunCommand,
    SendInput,
    WaitCommand,
)

from . import _execute
from ._runtime import ContainerRuntime, Process
from ._shell import ShellSession
from ._signals import exec_inside
from ._spill import exec_spill

SESSION_OPENS = 16  # shells being started at once, per agent


class _Server(Protocol):
    runtime: ContainerRuntime
    sessions: dict[tuple[str, str], ShellSession]
    session_opens: anyio.CapacityLimiter

    def adopted(self, sandbox_id: str) -> bool: ...


def _session(server: _Server, sandbox_id: str, name: str) -> ShellSession:
    session = server.sessions.get((sandbox_id, name))
    if session is None:
        why = (
            " (sessions do not survive an agent restart: this agent adopted the sandbox"
            " from its labels; create the session again)"
            if server.adopted(sandbox_id)
            else ""
        )
        raise SessionNotFound(
            f"sandbox {sandbox_id} has no session {name!r}{why}", sandbox_id=sandbox_id
        )
    return session


def _live_session(server: _Server, sandbox_id: str, name: str) -> ShellSession:
    session = _session(server, sandbox_id, name)
    if session.closed:
        # Report the closed session once more, then forget it.
        del server.sessions[(sandbox_id, name)]
    return session


async def create_session(server: _Server, conn: Connection, req: CreateSession) -> Reply:
    """Handler of `CreateSession`: start a shell and wait until it answers."""
    key = (req.sandbox_id, req.session)
    if key in server.sessions and not server.sessions[key].closed:
        raise AlreadyExists(
            f"sandbox {req.sandbox_id} already has a session {req.session!r}",
            sandbox_id=req.sandbox_id,
        )
    sandbox_id, runtime = req.sandbox_id, server.runtime

    async def open_exec(argv: list[str]) -> Process:
        return await runtime.exec(
            sandbox_id, argv, env={"PS1": "", "PS2": "", **req.env}, cwd=req.cwd
        )

    info = await runtime.inspect(sandbox_id)
    async with server.session_opens:
        session = await ShellSession.open(
            req.session,
            open_exec,
            exec_spill(runtime, sandbox_id),
            exec_inside(runtime, sandbox_id),
        )
    session.sandbox_owner = (info.owner_uid, info.owner)
    server.sessions[key] = session
    return Done(id=req.id)


async def close_session(server: _Server, conn: Connection, req: CloseSession) -> Reply:
    """Handler of `CloseSession`: end the shell and what it runs."""
    session = _session(server, req.sandbox_id, req.session)
    del server.sessions[(req.sandbox_id, req.session)]
    await session.kill()
    return Done(id=req.id)


async def run(server: _Server, conn: Connection, req: RunCommand) -> Reply:
    """Handler of `RunCommand`: run a command in a session (or start an interactive one)."""
    session = _live_session(server, req.sandbox_id, req.session)
    if req.interactive:
        await session.start_interactive(req.command, req.output_limit)
        return Done(id=req.id)

    async def forward(data: bytes) -> None:
        await conn.send(Output(id=req.id, data=data))

    result = await session.run(
        req.command,
        timeout=req.timeout,
        idle_timeout=req.idle_timeout,
        output_limit=req.output_limit,
        on_output=forward if req.stream else None,
    )
    if result.session_closed:
        server.sessions.pop((req.sandbox_id, req.session), None)
    if req.stream:
        result.output = b""
    return CommandReply(id=req.id, result=result)


async def send_input(server: _Server, conn: Connection, req: SendInput) -> Reply:
    """Handler of `SendInput`: bytes for the session's interactive command."""
    await _session(server, req.sandbox_id, req.session).send(req.data)
    return Done(id=req.id)


async def expect(server: _Server, conn: Connection, req: Expect) -> Reply:
    """Handler of `Expect`: wait for output of the interactive command matching a pattern."""
    session = _session(server, req.sandbox_id, req.session)
    index, before, match = await session.expect(req.patterns, req.timeout)
    return ExpectReply(id=req.id, index=index, before=before, match=match)


async def wait(server: _Server, conn: Connection, req: WaitCommand) -> Reply:
    """Handler of `WaitCommand`: the interactive command's result once it ends."""
    session = _session(server, req.sandbox_id, req.session)
    result = await session.wait(req.timeout)
    if result.session_closed:
        server.sessions.pop((req.sandbox_id, req.session), None)
    return CommandReply(id=req.id, result=result)


async def interrupt(server: _Server, conn: Connection, req: Interrupt) -> Reply:
    """Handler of `Interrupt`: SIGINT the program the session runs (not its shell)."""
    await _session(server, req.sandbox_id, req.session).interrupt()
    return Done(id=req.id)


async def execute(server: _Server, conn: Connection, req: Execute) -> Reply:
    """Handler of `Execute`: a one-off command, stdout and stderr apart."""
    result = await _execute.execute(
        server.runtime,
        req.sandbox_id,
        req.argv,
        cwd=req.cwd,
        env=req.env,
        stdin=req.stdin,
        timeout=req.timeout,
    )
    return ExecReply(id=req.id, result=result)


__all__ = [
    "SESSION_OPENS",
    "close_session",
    "create_session",
    "execute",
    "expect",
    "interrupt",
    "run",
    "send_input",
    "wait",
]
