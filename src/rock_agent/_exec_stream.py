"""A process run in a sandbox through the engine: its exec and its attached stream, behind
the runtime's `Process` handle (`DockerProcess`).

Rules:
- A process the container runtime could not start (its working folder, program or user is
  wrong) is an error naming that cause (`start_failure`), never a result. The engine tells
  it only as text on the exec's stream, so the stream checks where it ends or a write to it
  stops (`ExecStream`).
- A write the process stops taking is watched (`WRITE_CHECK`): one that can never finish
  ends with an error, not after the engine's own timeout.
- Every engine call here is bounded and mapped by `_engine`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import anyio

from rock_core import BadRequest, RockError, TransportError

from ._engine import engine_call, engine_errors
from ._exec_tty import first_resize, resize_exec, sized_argv
from ._runtime import OutputChunk, ProcessState
from ._start_failure import start_failure

# ---------------------------------------------------------------------------- exec

START_FAILURE_TEXT = 4096  # bytes of an exec's first output kept: the runtime's reason, if any
START_FAILURE_WAIT = 1.0  # seconds to wait for that reason when nobody had read it
WRITE_CHECK = 1.0  # seconds between checks that a process still runs while a write waits


class Execution:
    """One exec of a sandbox: the engine's handle, and how it ended once known."""

    def __init__(self, raw: Any, sandbox_id: str, program: str, bound: float) -> None:
        self.raw = raw
        self.sandbox_id = sandbox_id
        self.program = program
        self.ended = False
        self.pid = 0
        self.exit_code: int | None = None
        self._bound = bound

    @property
    def bound(self) -> float:
        """Seconds each engine call about it may take."""
        return self._bound

    async def state(self) -> tuple[int, int | None, bool]:
        """(host pid, exit code, running), as the engine says now."""
        with engine_call(f"inspecting a process in sandbox {self.sandbox_id}", self._bound):
            info = await self.raw.inspect()
        pid, exit_code, running = (
            int(info.get("Pid") or 0),
            info.get("ExitCode"),
            info.get("Running"),
        )
        if not running:
            self.ended, self.pid, self.exit_code = True, pid, exit_code
        return pid, exit_code, bool(running)

    async def wait_exit(self, tries: int = 50) -> int | None:
        """The exit code once the process has ended (the engine may lag a moment after its
        streams end); None if it still runs after `tries` looks."""
        exit_code = self.exit_code
        for _ in range(tries):
            if self.ended:
                return self.exit_code
            _, exit_code, _ = await self.state()
            if not self.ended:
                await anyio.sleep(0.02)
        return exit_code


class ExecStream:
    """The attached stream of an exec: its output, its input, and whether it ever started.

    The engine reports a process the runtime could not start (no such working folder, program
    or user) only as text on the stream: the exec has an exit code and no pid. That is
    checked where the stream ends, or a write to it stops: such a start is the error naming
    its cause. A write the process stops taking is checked every `WRITE_CHECK` seconds: one
    that can never finish (the process is gone) ends with an error, not after the engine's
    own timeout.
    """

    def __init__(self, execution: Execution, raw: Any) -> None:
        self.raw = raw
        self._execution = execution
        self._head = bytearray()  # the start of its output: the runtime's reason, if it failed
        self._checked = False
        self._reading = f"reading a process in sandbox {execution.sandbox_id}"
        self._writing = f"writing to a process in sandbox {execution.sandbox_id}"

    async def read_out(self) -> Any:
        """The next output message (with `.stream`, 1 or 2, and `.data`); None at the end."""
        with engine_errors(self._reading):
            message = await self.raw.read_out()
        if message is None:
            await self._check_started()
            return None
        self._keep(message)
        return message

    async def write_in(self, data: bytes) -> None:
        """Write to the process's stdin (`TransportError` if it ended before taking it).

        The hot path (a session's next command) is one write into the connection's buffer,
        with no timer: while the connection is not paused the write cannot wait
        (`_drains_at_once`). Only a write into a paused connection is watched, every
        `WRITE_CHECK` seconds while it waits.
        """
        execution = self._execution
        what = self._writing
        chunk = data
        while True:
            waited = None
            try:
                with engine_errors(what):
                    if _drains_at_once(self.raw):
                        await self.raw.write_in(chunk)
                    else:
                        with anyio.move_on_after(WRITE_CHECK) as waited:
                            await self.raw.write_in(chunk)
            except (RuntimeError, AssertionError) as exc:  # aiodocker: the stream was closed
                await self._check_started()  # a process that never ran: that is the error
                raise TransportError(f"{what}: the stream is closed") from exc
            except RockError:
                await self._check_started()
                raise
            if waited is None or not waited.cancelled_caught:
                return
            # All of it is buffered; it has not drained for a while: is the process still there?
            chunk = b""
            await execution.state()
            if execution.ended:
                await self._check_started()
                raise TransportError(f"{what}: the process ended before it took its input")

    async def close(self) -> None:
        """Close the stream (the process may go on)."""
        await self.raw.close()

    def never_ran(self) -> bool:
        """True if the ended exec never started: an exit code and no pid (Docker keeps the pid
        of one that ran; Podman's differs: `_podman`)."""
        execution = self._execution
        return execution.ended and execution.pid == 0 and execution.exit_code is not None

    def _keep(self, message: Any) -> None:
        if message.stream == 1 and len(self._head) < START_FAILURE_TEXT:
            self._head += message.data[: START_FAILURE_TEXT - len(self._head)]

    async def _check_started(self) -> None:
        if self._checked:
            return
        self._checked = True
        execution = self._execution
        await execution.wait_exit()
        if not self.never_ran():
            return
        # It never ran: what it "printed" is the runtime's reason, sent at once.
        with anyio.move_on_after(START_FAILURE_WAIT), contextlib.suppress(Exception):
            while not self._head and (message := await self.raw.read_out()) is not None:
                self._keep(message)
        text = bytes(self._head).decode(errors="replace")
        head = f"cannot run {execution.program!r} in sandbox {execution.sandbox_id}"
        raise start_failure(text, head) or BadRequest(
            f"{head}: the container runtime refused: {text.strip() or 'no reason given'}"
        )


async def start_process(
    container: Any,
    sandbox_id: str,
    argv: list[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str,
    stdin: bool,
    bound: float,
    terminal: tuple[int, int] | None = None,
    stream_type: type[ExecStream] = ExecStream,
) -> DockerProcess:
    """Start `argv` in a container, attached (on a terminal of `terminal` rows, cols, if
    given); its handle reads and writes it."""
    with engine_call(f"starting a process in sandbox {sandbox_id}", bound):
        raw = await container.exec(
            sized_argv(argv) if terminal else argv,
            stdin=stdin,
            stdout=True,
            stderr=True,
            tty=terminal is not None,
            environment=[f"{k}={v}" for k, v in (env or {}).items()] or None,
            workdir=cwd or None,
        )
        attached = raw.start(detach=False)
        try:
            await attached._init()
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await attached.close()
            raise
    execution = Execution(raw, sandbox_id, argv[0], bound)
    process = DockerProcess(execution, stream_type(execution, attached), terminal is not None)
    if terminal is not None:
        await first_resize(raw, sandbox_id, *terminal, bound)
    return process


class DockerProcess:
    """The runtime's `Process` handle over one exec and its attached stream."""

    def __init__(self, execution: Execution, stream: ExecStream, tty: bool = False) -> None:
        self._execution = execution
        self._stream = stream
        self._tty = tty

    @property
    def sandbox_id(self) -> str:
        """The sandbox it runs in."""
        return self._execution.sandbox_id

    async def write(self, data: bytes) -> None:
        """Write to its stdin (see `ExecStream.write_in`)."""
        await self._stream.write_in(data)

    async def read(self) -> OutputChunk | None:
        """The next piece of output; None at the end (see `ExecStream.read_out`)."""
        message = await self._stream.read_out()
        if message is None:
            return None
        return OutputChunk("stdout" if message.stream == 1 else "stderr", message.data)

    async def close_input(self) -> None:
        """Half-close the stream: the process sees end-of-file on its stdin."""
        with contextlib.suppress(Exception):
            await _close_write(self._stream.raw)

    async def state(self) -> ProcessState:
        """Its state as the engine says now."""
        return ProcessState(*await self._execution.state())

    async def wait(self) -> int | None:
        """Its exit code once its streams have ended (the engine may lag a moment)."""
        return await self._execution.wait_exit()

    async def resize(self, rows: int, cols: int) -> None:
        """Set the size of its terminal (`BadRequest` if it has none)."""
        if not self._tty:
            raise BadRequest(f"a process in sandbox {self.sandbox_id} has no terminal to resize")
        execution = self._execution
        await resize_exec(execution.raw, execution.sandbox_id, rows, cols, execution.bound)

    async def aclose(self) -> None:
        """Close the stream (the process may go on; its output is dropped)."""
        with contextlib.suppress(Exception):
            await self._stream.close()


def _drains_at_once(stream: Any) -> bool:
    """True if a write to an attached exec stream cannot wait: its aiohttp connection is up and
    not paused (aiodocker's `write_in` then waits only in aiohttp's `_drain_helper`, which
    returns at once). False when that cannot be told: the write is then watched."""
    resp = getattr(stream, "_resp", None)
    conn = getattr(resp, "connection", None)
    protocol = getattr(conn, "protocol", None)
    return (
        getattr(protocol, "transport", None) is not None
        and getattr(protocol, "_paused", True) is False
    )


async def _close_write(stream: Any) -> None:
    """Half-close an attached exec stream so the process sees end-of-file on stdin."""
    resp = stream._resp
    if resp is None:
        return
    conn = resp.connection
    if conn is not None and conn.transport is not None and conn.transport.can_write_eof():
        conn.transport.write_eof()


__all__ = ["DockerProcess", "ExecStream", "Execution", "start_process"]
