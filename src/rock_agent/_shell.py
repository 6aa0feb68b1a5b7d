"""A named, stateful shell session: one long-lived interactive shell on a stream opened once.

How a command runs. The shell (bash when the image has it, else the image's ``sh``; busybox
ash qualifies) runs interactive on plain pipes: interactive, so a syntax error or a SIGINT
aborts only the current command and never the shell; pipes, so output is byte-exact (no
terminal translating newlines, echoing input or printing prompts; PS1 and PS2 are empty and the
shell's own stderr goes to /dev/null). For each command the agent writes::

    __rock_c='<the command, single-quoted>'
    { command eval "$__rock_c"
    } </dev/null 2>&1; printf '%s%d\\n' '<marker>' "$?"

`eval` runs it in the shell itself, so cwd, variables and functions persist; a syntax error
stays inside `eval` (status 2). Stdin is /dev/null unless the command is interactive, so a bare
`cat` ends at once. Stderr joins stdout in order. The marker is 128 random bits made for this
command only, so no output can forge the end of a command or shift later results.

Timeouts (overall, and no-output) escalate: SIGINT to the shell and everything under it (an
interactive shell then abandons the command line, loops included), then SIGKILL to what is
under the shell, a few rounds, and only then the shell itself (the session is then reported
closed). After the first signal a fresh marker line is written, because an aborted command line
never reaches its own `printf`.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import IO, Any

import anyio

from rock_core._errors import BadRequest, RockError, SandboxFailed, SessionClosed, TimedOut
from rock_core._protocol import CommandResult

from . import _procs

# Busybox ash, interactive on a pipe, reads commands with fgets() and takes the EINTR of a
# finished background job's SIGCHLD for end of input, so it exits; given the pipe as a script
# file (/dev/stdin) it reads with a retrying read() instead. Bash needs no such help.
BOOT = (
    "if command -v bash >/dev/null 2>&1; then exec bash --norc --noprofile -i 2>/dev/null; fi; "
    "exec sh -i /dev/stdin 2>/dev/null"
)
SETUP = (
    "PS1=''; PS2=''; PS4='+ '\n"
    '[ -n "$BASH_VERSION" ] && { set +H; set +o history; }\n'
    # Interactive bash says "exit" on stderr when it exits; that is not the command's output.
    '[ -n "$BASH_VERSION" ] && eval \'exit() { builtin exit "$@" 2>/dev/null; }\'\n'
)
ESCALATION_STEP = 0.5  # seconds between escalation rounds
ESCALATION_ROUNDS = 4  # rounds before the shell itself is killed
READY_TIMEOUT = 15.0
OUTPUT_DIR = "/tmp/.rock/output"

SaveOutput = Callable[[str, IO[bytes], int], Awaitable[None]]
OnOutput = Callable[[bytes], Awaitable[None]]
WaitExit = Callable[[Any], Awaitable[int | None]]


def quote(command: str) -> bytes:
    """Single-quote `command` for the shell, byte-exact."""
    data = command.encode("utf-8", "surrogateescape")
    if b"\x00" in data:
        raise BadRequest("a command cannot contain NUL bytes")
    return b"'" + data.replace(b"'", b"'\\''") + b"'"


def wrap(command: str, marker: bytes, *, interactive: bool, bash: bool) -> bytes:
    """The lines that run `command` in the session and print `marker` with its status.

    Bash sources the command from a here-document instead of `eval`: the same shell and state,
    but bash then does not print job notices ("[1] 1234") into the output.
    """
    stdin = b"" if interactive else b" </dev/null"
    # The here-document expands $__rock_c once (its delimiter is unquoted on purpose); the
    # command's text is the expansion's result, which is never expanded again.
    run = (
        b". /dev/fd/3 3<<__rock_eof\n$__rock_c\n__rock_eof\n"
        if bash
        else b'command eval "$__rock_c"\n'
    )
    return (
        b"__rock_c=" + quote(command) + b"\n"
        b"{ " + run + b"}" + stdin + b" 2>&1; "
        b"printf '%s%d\\n' '" + marker + b'\' "$?"\n'
    )


def new_marker() -> bytes:
    """A marker no command can guess."""
    return b"__rock_" + secrets.token_hex(16).encode() + b"_"


class _Output:
    """Collects a command's output: the first `limit` bytes in memory, everything in a spool."""

    def __init__(self, limit: int, on_output: OnOutput | None) -> None:
        self.limit = max(0, limit)
        self.head = bytearray()
        self.total = 0
        self.spool: IO[bytes] | None = None
        self._on_output = on_output

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    async def add(self, data: bytes) -> None:
        if not data:
            return
        room = self.limit - len(self.head)
        kept = data[:room] if room > 0 else b""
        self.total += len(data)
        if kept:
            self.head += kept
            if self._on_output is not None:
                await self._on_output(kept)
        if self.total > self.limit:
            if self.spool is None:
                self.spool = tempfile.TemporaryFile(prefix="rock-output-")
                self.spool.write(self.head)
                self.spool.write(data[len(kept) :])
            else:
                self.spool.write(data)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


class ShellSession:
    """One shell in one sandbox; commands on it run one at a time."""

    def __init__(
        self,
        name: str,
        execution: Any,
        stream: Any,
        host_pid: int,
        save_output: SaveOutput,
        wait_exit: WaitExit,
    ) -> None:
        self.name = name
        self._execution = execution
        self._stream = stream
        self.host_pid = host_pid
        self._save_output = save_output
        self._wait_exit = wait_exit
        self._buffer = bytearray()
        self._lock = anyio.Lock()
        self._eof = False
        self.closed = False
        self.bash = False
        self.commands = 0
        self.sandbox_owner: tuple[int, str] = (-1, "")  # (uid, owner) of its sandbox
        # An interactive command in progress: its marker and output so far.
        self._interactive: bytes | None = None
        self._interactive_started = 0.0
        self._interactive_output: _Output | None = None

    # ------------------------------------------------------------------ start

    @classmethod
    async def open(
        cls,
        name: str,
        open_exec: Callable[[list[str]], Awaitable[tuple[Any, Any]]],
        exec_pid: Callable[[Any], Awaitable[tuple[int, int | None, bool]]],
        wait_exit: WaitExit,
        save_output: SaveOutput,
    ) -> ShellSession:
        """Start the shell and wait until it answers."""
        execution, stream = await open_exec(["/bin/sh", "-c", BOOT])
        session = cls(name, execution, stream, 0, save_output, wait_exit)
        marker = new_marker()
        await session._write(
            SETUP.encode() + b"printf '%s%d\\n' '" + marker + b'\' "${BASH_VERSION:+1}0"\n'
        )
        with anyio.move_on_after(READY_TIMEOUT) as scope:
            found = await session._read_until_marker(marker)
        if not scope.cancelled_caught and found is not None:
            session.bash = found[1] == 10
        if scope.cancelled_caught or found is None:
            text = bytes(session._buffer).decode(errors="replace").strip()
            await session.kill()
            raise SandboxFailed(
                f"session {name!r}: the shell did not start"
                + (f": {text}" if text else " (does the image have /bin/sh?)")
            )
        session._buffer.clear()
        # Only now is the process surely running; the engine may still need a moment to say so.
        pid, running = 0, False
        for _ in range(100):
            pid, _, running = await exec_pid(execution)
            if pid > 1 and running:
                break
            await anyio.sleep(0.02)
        if pid <= 1 or not running:
            await session.kill()
            raise SandboxFailed(f"session {name!r}: the engine reports no process for the shell")
        session.host_pid = pid
        return session

    # ------------------------------------------------------------------ stream helpers

    async def _write(self, data: bytes) -> None:
        try:
            await self._stream.write_in(data)
        except Exception as exc:  # aiohttp/engine errors: the shell is gone
            self._eof = True
            raise SessionClosed(f"session {self.name!r} is closed: {exc}") from exc

    async def _fill(self) -> bool:
        """Read more output into the buffer; False at end of stream."""
        if self._eof:
            return False
        try:
            message = await self._stream.read_out()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            message = None
        if message is None:
            self._eof = True
            return False
        if message.stream == 1:
            self._buffer += message.data
        return True

    async def _read_until_marker(self, marker: bytes) -> tuple[bytes, int] | None:
        """Read until `marker` and its status line; return (output before it, status)."""
        while True:
            found = _find_marker(self._buffer, marker)
            if found is not None:
                return found
            if not await self._fill():
                return None

    # ------------------------------------------------------------------ commands

    async def run(
        self,
        command: str,
        *,
        timeout: float | None,
        idle_timeout: float | None,
        output_limit: int,
        on_output: OnOutput | None = None,
    ) -> CommandResult:
        """Run a non-interactive command and return its result."""
        data = wrap(command, marker := new_marker(), interactive=False, bash=self.bash)
        async with self._lock:
            self._check_usable()
            output = _Output(output_limit, on_output)
            try:
                result = await self._run_locked(data, marker, output, timeout, idle_timeout)
                return await self._finish_output(result, output)
            finally:
                output.close()

    async def _run_locked(
        self,
        data: bytes,
        marker: bytes,
        output: _Output,
        timeout: float | None,
        idle_timeout: float | None,
    ) -> CommandResult:
        started = time.monotonic()
        self.commands += 1
        await self._write(data)
        return await self._collect(marker, output, started, timeout, idle_timeout)

    async def _collect(
        self,
        marker: bytes,
        output: _Output,
        started: float,
        timeout: float | None,
        idle_timeout: float | None,
    ) -> CommandResult:
        deadline = None if timeout is None else started + timeout
        since = _procs.now_ticks()
        markers = [marker]
        timed_out = idle_timed_out = False
        escalation = 0
        next_escalation = 0.0
        status: int | None = None
        last_output = time.monotonic()
        while True:
            found = _find_any(self._buffer, markers)
            if found is not None:
                index, before, code, end = found
                await output.add(before)
                del self._buffer[:end]
                if index == 0:
                    status = code
                    if len(markers) == 1:
                        break
                    markers[0] = b""  # seen; now wait for the recovery marker
                    continue
                if status is None:
                    status = code
                break
            # Forward all but a tail that could still become a marker line.
            keep = _held_back(self._buffer, markers)
            if len(self._buffer) > keep:
                forward = len(self._buffer) - keep
                await output.add(bytes(self._buffer[:forward]))
                del self._buffer[:forward]
            now = time.monotonic()
            wait = _next_wait(now, deadline, idle_timeout, last_output, escalation, next_escalation)
            got = True
            with anyio.move_on_after(wait) if wait is not None else contextlib.nullcontext():
                got = await self._fill()
                if got:
                    last_output = time.monotonic()
                    continue
            if not got:
                # The shell is gone (`exit`, or killed): report what it said and close.
                await output.add(bytes(self._buffer))
                self._buffer.clear()
                status = await self._exit_code()
                self.closed = True
                return self._result(output, status, started, timed_out, idle_timed_out, True)
            now = time.monotonic()
            if escalation == 0:
                if deadline is not None and now >= deadline:
                    timed_out = True
                elif idle_timeout is not None and now - last_output >= idle_timeout:
                    idle_timed_out = True
                else:
                    continue
            if now < next_escalation:
                continue
            escalation += 1
            next_escalation = now + ESCALATION_STEP
            if escalation == 1:
                recovery = new_marker()
                markers.append(recovery)
                self._signal(signal.SIGINT, first=True)
                await self._write(b"printf '%s%d\\n' '" + recovery + b'\' "$?"\n')
            elif escalation <= ESCALATION_ROUNDS:
                self._signal(signal.SIGKILL, first=False)
            else:
                _procs.kill_tree(self.host_pid, include_root=True)
        if timed_out or idle_timed_out:
            # Background jobs ignore SIGINT; kill what this command started, nothing older.
            _procs.kill_started_since(self.host_pid, since)
        return self._result(output, status, started, timed_out, idle_timed_out, False)

    def _result(
        self,
        output: _Output,
        status: int | None,
        started: float,
        timed_out: bool,
        idle_timed_out: bool,
        closed: bool,
    ) -> CommandResult:
        return CommandResult(
            output=bytes(output.head),
            exit_code=status,
            timed_out=timed_out,
            idle_timed_out=idle_timed_out,
            truncated=output.truncated,
            total_bytes=output.total,
            session_closed=closed,
            duration=time.monotonic() - started,
        )

    async def _finish_output(self, result: CommandResult, output: _Output) -> CommandResult:
        """Store the full output of a truncated command in the sandbox; set its path."""
        if not output.truncated or output.spool is None:
            return result
        path = f"{OUTPUT_DIR}/{self.name}-{self.commands}-{secrets.token_hex(4)}.log"
        output.spool.seek(0)
        await self._save_output(path, output.spool, output.total)
        result.output_path = path
        return result

    def _signal(self, sig: int, *, first: bool) -> None:
        """SIGINT the shell and its tree, or SIGKILL the tree and SIGINT the shell."""
        if first:
            _procs.signal_tree(self.host_pid, sig, include_root=True)
        else:
            _procs.signal_tree(self.host_pid, sig, include_root=False)
            _procs.signal_tree(self.host_pid, signal.SIGINT, include_root=True)

    async def _exit_code(self) -> int | None:
        try:
            return await self._wait_exit(self._execution)
        except RockError:
            return None  # the engine lost the process too: no code to report

    def _check_usable(self) -> None:
        if self.closed or self._eof:
            self.closed = True
            raise SessionClosed(f"session {self.name!r} is closed (its shell has exited)")
        if self._interactive is not None:
            raise BadRequest(
                f"session {self.name!r} is running an interactive command; "
                "wait for it or interrupt it first"
            )

    # ------------------------------------------------------------------ interactive

    async def start_interactive(self, command: str, output_limit: int) -> None:
        """Start a command that reads the session's input; drive it with send/expect/wait."""
        data = wrap(command, marker := new_marker(), interactive=True, bash=self.bash)
        async with self._lock:
            self._check_usable()
            self.commands += 1
            await self._write(data)
            self._interactive = marker
            self._interactive_started = time.monotonic()
            self._interactive_output = _Output(output_limit, None)

    def _require_interactive(self) -> bytes:
        if self.closed:
            raise SessionClosed(f"session {self.name!r} is closed (its shell has exited)")
        if self._interactive is None:
            raise BadRequest(f"session {self.name!r} has no interactive command running")
        return self._interactive

    async def send(self, data: bytes) -> None:
        """Write to the interactive command's input."""
        self._require_interactive()
        await self._write(data)

    async def expect(self, patterns: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        """Wait for output matching one of `patterns`: (index, before, match).

        Index -1 means the command ended first; `before` then holds its remaining output.
        """
        marker = self._require_interactive()
        try:
            compiled = [re.compile(p.encode("utf-8", "surrogateescape")) for p in patterns]
        except re.error as exc:
            raise BadRequest(f"bad expect pattern: {exc}") from exc
        if not compiled:
            raise BadRequest("expect needs at least one pattern")
        async with self._lock:
            with anyio.move_on_after(timeout):
                while True:
                    end = self._buffer.find(marker)
                    visible = self._buffer if end < 0 else self._buffer[:end]
                    best: tuple[int, int, int] | None = None
                    for index, pattern in enumerate(compiled):
                        m = pattern.search(visible)
                        if m and (best is None or m.start() < best[1]):
                            best = (index, m.start(), m.end())
                    if best is not None:
                        index, start, stop = best
                        before, match = bytes(visible[:start]), bytes(visible[start:stop])
                        del self._buffer[:stop]
                        return index, before, match
                    if end >= 0 or not await self._fill():
                        rest = bytes(visible)
                        del self._buffer[: len(visible)]
                        return -1, rest, b""
        raise TimedOut(
            f"session {self.name!r}: no output matched {patterns!r} within {timeout:g} s",
            output=bytes(self._buffer[-4096:]).decode(errors="replace"),
        )

    async def wait(self, timeout: float | None) -> CommandResult:
        """Wait for the interactive command to end (interrupting it at the timeout)."""
        marker = self._require_interactive()
        output = self._interactive_output or _Output(1 << 20, None)
        async with self._lock:
            try:
                remaining = None if timeout is None else max(0.0, timeout)
                result = await self._collect(marker, output, time.monotonic(), remaining, None)
                result.duration = time.monotonic() - self._interactive_started
                return await self._finish_output(result, output)
            finally:
                self._interactive = None
                self._interactive_output = None
                output.close()

    def interrupt(self) -> None:
        """SIGINT whatever the session runs; the shell abandons its current command line."""
        if self.closed:
            raise SessionClosed(f"session {self.name!r} is closed (its shell has exited)")
        _procs.signal_tree(self.host_pid, signal.SIGINT, include_root=True)

    # ------------------------------------------------------------------ end

    async def kill(self) -> None:
        """End the shell and everything it started."""
        self.closed = True
        _procs.kill_tree(self.host_pid, include_root=True)
        with contextlib.suppress(Exception):
            await self._stream.close()


def _held_back(buffer: bytearray, markers: list[bytes]) -> int:
    """How many bytes at the end of `buffer` may be the start of a marker line."""
    longest = 0
    for marker in markers:
        if not marker:
            continue
        at = buffer.rfind(marker[:1], max(0, len(buffer) - len(marker) - 16))
        while at >= 0:
            tail = bytes(buffer[at:])
            head, rest = tail[: len(marker)], tail[len(marker) :]
            if marker.startswith(head) and (not rest or rest.isdigit() or rest[:1] == b"-"):
                longest = max(longest, len(tail))
                break
            at = buffer.rfind(marker[:1], max(0, len(buffer) - len(marker) - 16), at)
    return longest


def _find_marker(buffer: bytearray, marker: bytes) -> tuple[bytes, int] | None:
    found = _find_any(buffer, [marker])
    if found is None:
        return None
    _, before, code, end = found
    del buffer[:end]
    return before, code


def _find_any(buffer: bytearray, markers: list[bytes]) -> tuple[int, bytes, int, int] | None:
    """The earliest complete `marker<status>\\n` in buffer: (which, before, status, end)."""
    best: tuple[int, bytes, int, int] | None = None
    for index, marker in enumerate(markers):
        if not marker:
            continue
        at = buffer.find(marker)
        if at < 0:
            continue
        newline = buffer.find(b"\n", at + len(marker))
        if newline < 0:
            continue
        if best is None or at < len(best[1]):
            digits = bytes(buffer[at + len(marker) : newline])
            code = int(digits) if digits.isdigit() else -1
            best = (index, bytes(buffer[:at]), code, newline + 1)
    return best


def _next_wait(
    now: float,
    deadline: float | None,
    idle_timeout: float | None,
    last_output: float,
    escalation: int,
    next_escalation: float,
) -> float | None:
    """How long the next read may block before a timeout or escalation step is due."""
    if escalation:
        return max(0.0, next_escalation - now)
    waits = []
    if deadline is not None:
        waits.append(deadline - now)
    if idle_timeout is not None:
        waits.append(last_output + idle_timeout - now)
    return max(0.0, min(waits)) if waits else None
