"""What each swerex-remote request does to one sandbox of the kit; knows nothing of HTTP.

Rules:
- Every command line runs on a persistent session of the kit (`Sandbox.arun`); a SWE-ReX
  session ``name`` is the kit session ``swerex-<name>``, so the endpoint's sessions never
  collide with ones the sandbox's owner opens.
- `check` maps as in SWE-ReX: ``raise`` turns a non-zero exit into `NonZeroExitCodeError`,
  ``silent`` reports the exit code, ``ignore`` reports none. A command that passes its
  `timeout` is interrupted by the kit (the session survives) and raises `CommandTimeoutError`;
  a later `bash_interrupt` then has nothing left to stop.
- An interactive command starts a program (`start_interactive`) or feeds a line to the one
  running, then waits for one of its `expect` strings (or its end); an interactive quit feeds
  its line and waits for the program to end.
- `execute` runs a program outside any session as `subprocess.run` would (``shell`` through
  ``/bin/sh -c``); files go through `read_file`, `write_file` and `upload`.
- Output past `output_limit` ends with a line saying how much there was and which file of the
  sandbox holds all of it.
- Every kit error leaves as a `RemoteError` (`swerex_wire.remote_error_of`).
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio

from rock_core import RockError
from rock_sdk import InteractiveProcess, Sandbox, SandboxState

from .swerex_wire import (
    BAD_VALUE,
    COMMAND_TIMEOUT,
    NON_ZERO_EXIT,
    SESSION_MISSING,
    BashAction,
    BashInterrupt,
    CloseSession,
    Command,
    CreateSession,
    ReadFile,
    RemoteError,
    WriteFile,
    command_response,
    observation,
    remote_error_of,
    session_response,
)

log = logging.getLogger("rock_sdk.integrations.swerex")
T = TypeVar("T")

SESSION_PREFIX = "swerex-"
DEFAULT_OUTPUT_LIMIT = 1 << 20


@contextmanager
def _as_remote(*, creating_session: bool = False) -> Iterator[None]:
    try:
        yield
    except RockError as exc:
        raise remote_error_of(exc, creating_session=creating_session) from exc


class SwerexRuntime:
    """The requests of SWE-ReX's runtime, performed on `sandbox`."""

    def __init__(self, sandbox: Sandbox, *, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self._sandbox = sandbox
        self._output_limit = output_limit
        self._sessions: set[str] = set()  # SWE-ReX names of the sessions opened here
        self._programs: dict[str, InteractiveProcess] = {}  # a session's running program

    def is_alive(self) -> dict[str, Any]:
        """Alive while the sandbox runs (read from the core's view, no call)."""
        state = self._sandbox.state
        if state is not SandboxState.RUNNING:
            return {"is_alive": False, "message": f"the sandbox is {state.value}"}
        return {"is_alive": True, "message": ""}

    async def create_session(self, request: CreateSession) -> dict[str, Any]:
        """Open a session and source its start-up files."""
        name = self._kit_name(request.session)
        with _as_remote(creating_session=True):
            await self._sandbox.create_session(name)
        self._sessions.add(request.session)
        if not request.startup_source:
            return session_response()
        line = " ; ".join(f". {_quote(path)}" for path in request.startup_source)
        with _as_remote():
            result = await self._sandbox.arun(
                line, name, timeout=request.startup_timeout, output_limit=self._output_limit
            )
        return session_response(result.output)

    async def run_in_session(self, action: BashAction | BashInterrupt) -> dict[str, Any]:
        """Run a command line, feed an interactive program, or interrupt a session."""
        name = self._kit_name(action.session)
        if action.session not in self._sessions:
            raise RemoteError(SESSION_MISSING, f"session {action.session!r} does not exist")
        if isinstance(action, BashInterrupt):
            return await self._interrupt(action)
        if action.is_interactive_command or action.is_interactive_quit:
            return await self._interactive(action, name)
        with _as_remote():
            result = await self._sandbox.arun(
                action.command, name, timeout=action.timeout, output_limit=self._output_limit
            )
        if result.session_closed:
            self._forget(action.session)
        if result.timed_out:
            raise RemoteError(
                COMMAND_TIMEOUT,
                f"timeout after {action.timeout} seconds while running command {action.command!r}",
            )
        output = result.output
        if result.truncated:  # the agent's model should know it sees only the start
            output += (
                f"\n[output truncated: {result.total_bytes} bytes in all,"
                f" kept in {result.output_path}]\n"
            )
        exit_code = None if action.check == "ignore" else result.exit_code
        if action.check == "raise" and exit_code != 0:
            message = (
                f"Command {action.command!r} failed with exit code {exit_code}."
                f" Here is the output:\n{output!r}"
            )
            raise RemoteError(NON_ZERO_EXIT, _prefixed(action.error_msg, message))
        return observation(output, exit_code)

    async def _interactive(self, action: BashAction, name: str) -> dict[str, Any]:
        timeout = 30.0 if action.timeout is None else action.timeout
        program = self._programs.get(action.session)
        with _as_remote():
            if program is None:
                if action.is_interactive_quit:
                    raise RemoteError(
                        BAD_VALUE, f"no interactive program runs in session {action.session!r}"
                    )
                program = await self._sandbox.start_interactive(action.command, name)
                self._programs[action.session] = program
            else:
                await program.sendline(action.command)
            if action.is_interactive_quit or not action.expect:
                return await self._wait_end(action, program, timeout)
            match = await self._timed(action, program.expect(*action.expect, timeout=timeout))
        # As SWE-ReX does, an interactive command's output is stripped of the surrounding
        # blank lines (the newline after the previous prompt, for one).
        if match.index < 0:
            self._programs.pop(action.session, None)
            return observation(match.before.strip(), 0)
        return observation(match.before.strip(), 0, expect_string=action.expect[match.index])

    async def _wait_end(
        self, action: BashAction, program: InteractiveProcess, timeout: float
    ) -> dict[str, Any]:
        result = await program.wait(timeout)
        self._programs.pop(action.session, None)
        if result.timed_out:
            raise RemoteError(
                COMMAND_TIMEOUT, f"timeout after {timeout} seconds waiting for {action.command!r}"
            )
        return observation(result.output, 0)

    async def _timed(self, action: BashAction, call: Awaitable[T]) -> T:
        try:
            return await call
        except RockError as exc:
            error = remote_error_of(exc)
            if error.class_path == COMMAND_TIMEOUT:
                error.message = f"timeout while running {action.command!r}: {exc}"
            raise error from exc

    async def _interrupt(self, action: BashInterrupt) -> dict[str, Any]:
        program = self._programs.pop(action.session, None)
        if program is None:  # a timed-out command was already interrupted by the kit
            return observation("", 0)
        with _as_remote():
            await program.interrupt()
            result = await program.wait(max(action.timeout, 1.0))
        return observation(result.output.strip(), 0)

    async def close_session(self, request: CloseSession) -> dict[str, Any]:
        """End a session's shell."""
        name = self._kit_name(request.session)
        if request.session not in self._sessions:
            raise RemoteError(SESSION_MISSING, f"session {request.session!r} does not exist")
        self._forget(request.session)
        with _as_remote():
            await self._sandbox.close_session(name)
        return {"session_type": "bash"}

    async def execute(self, command: Command) -> dict[str, Any]:
        """Run a program outside any session."""
        argv = _argv(command)
        with _as_remote():
            result = await self._sandbox.execute(
                argv, cwd=command.cwd or "", env=command.env, timeout=command.timeout
            )
        if result.timed_out:
            raise RemoteError(
                COMMAND_TIMEOUT, f"Timeout ({command.timeout}s) exceeded while running command"
            )
        if command.check and result.exit_code != 0:
            message = (
                f"Command {command.command!r} failed with exit code {result.exit_code}."
                f" Stdout:\n{result.stdout!r}\nStderr:\n{result.stderr!r}"
            )
            raise RemoteError(NON_ZERO_EXIT, _prefixed(command.error_msg, message))
        return command_response(result.stdout, result.stderr, result.exit_code)

    async def read_file(self, request: ReadFile) -> dict[str, Any]:
        """A file's text."""
        encoding = request.encoding or "utf-8"
        errors = request.errors or "strict"
        try:
            codecs.lookup(encoding)
            codecs.lookup_error(errors)
        except LookupError as exc:
            raise RemoteError(BAD_VALUE, str(exc)) from None
        with _as_remote():
            data = await self._sandbox.read_file(request.path)
        try:
            return {"content": data.decode(encoding, errors)}
        except UnicodeDecodeError as exc:
            raise RemoteError(BAD_VALUE, f"{request.path} is not {encoding} text: {exc}") from None

    async def write_file(self, request: WriteFile) -> dict[str, Any]:
        """Write a file's whole text (UTF-8), creating its folders."""
        with _as_remote():
            await self._sandbox.write_file(request.path, request.content.encode())
        return {}

    async def upload(self, local: Path, target: str) -> dict[str, Any]:
        """Copy a local file, or a folder's contents, to `target` in the sandbox."""
        with _as_remote():
            await self._sandbox.upload(local, target)
        return {}

    async def close(self) -> dict[str, Any]:
        """Close every session opened through the endpoint (the sandbox stays)."""
        for session in sorted(self._sessions):
            self._forget(session)
            try:
                await self._sandbox.close_session(self._kit_name(session))
            except RockError as exc:  # already gone with its shell: nothing left to close
                log.debug("closing session %s: %s", session, exc)
        return {}

    async def aclose(self) -> None:
        """Close the sessions, whatever state the sandbox is in (shielded)."""
        with anyio.CancelScope(shield=True):
            try:
                await self.close()
            except Exception as exc:  # the endpoint is going away: report, never mask
                log.warning("closing the SWE-ReX sessions: %s", exc)

    def _forget(self, session: str) -> None:
        self._sessions.discard(session)
        self._programs.pop(session, None)

    @staticmethod
    def _kit_name(session: str) -> str:
        return SESSION_PREFIX + session


def _argv(command: Command) -> list[str]:
    """The argv `subprocess.run` would run (``shell`` means ``/bin/sh -c``)."""
    if command.shell:
        parts = [command.command] if isinstance(command.command, str) else command.command
        argv = ["/bin/sh", "-c", *parts]
    elif isinstance(command.command, str):
        argv = [command.command]
    else:
        argv = list(command.command)
    if not argv or not argv[0]:
        raise RemoteError(BAD_VALUE, "execute needs a command, got an empty one")
    if command.merge_output_streams:
        argv = ["/bin/sh", "-c", 'exec "$@" 2>&1', "sh", *argv]
    return argv


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _prefixed(error_msg: str, message: str) -> str:
    return f"{error_msg}: {message}" if error_msg else message
