"""A named, stateful shell session: one long-lived interactive shell on a stream opened once.

How a command runs. The shell (bash when the image has it, else the image's ``sh``; busybox
ash qualifies) runs interactive on plain pipes: interactive, so a syntax error or a SIGINT
aborts only the current command and never the shell; pipes, so output is byte-exact (no
terminal translating newlines, echoing input or printing prompts). `_wrap` writes the lines
that run each command between a start line and an end line, whatever the user's shell settings
(PROMPT_COMMAND, PS0, PS4 and `set -x`, traps, `set -e`, HISTFILE, aliases); read its rules
for what `set -e` does. Stdin is /dev/null unless the command is interactive, so a bare `cat`
ends at once. Stderr joins stdout in order.

Rules:
- Timeouts (overall, and no-output) escalate: SIGINT to the shell and what the command
  started (an interactive shell then abandons the command line, loops included) and a fresh
  end line is written (an aborted line never reaches its own); then SIGKILL to what the
  command started, a few rounds; only then the shell itself (the session is then reported
  closed). At a timeout everything the command started is killed, also processes that left
  the shell's tree, found by their `ROCK_CMD` mark (`_signals.Signals.command_pids`); other
  commands' and other sessions' processes are not touched. An agent the kernel does not let
  signal the sandbox's processes (not root) signals them from inside the sandbox (`_signals`).
- Interactive commands share the shell's input with the program: nothing may be written to it
  while a program could read it. `start_interactive` returns once the command's start line is
  out (the shell has read every byte of the command line, so later input reaches the
  program); a start line that does not come in `START_TIMEOUT` closes the session (the shell
  could read later input as commands). `interrupt` is Ctrl-C without job control: SIGINT to
  the program and the shell (a shell loop ends; a program that handles SIGINT goes on). Once
  the interrupted program is gone, `wait` writes a fresh end line in case the shell abandoned
  the command line, and accepts whichever end line comes; if only processes the SIGINT did
  not reach run (the shell went on with a loop: `_collect.after_interrupt`), those and the
  shell get it again, up to 4 times. `wait`'s timeout escalates on the
  program only (SIGINT, then SIGKILL), and interrupts the shell once no process of the command
  is left.
- A command's `oom_killed` says the kernel killed a process of the sandbox for memory while
  it ran (`_oom`). Output past `output_limit` goes to a file in the sandbox (`_spill`).
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from rock_core import BadRequest, FileNotFound, RockError, SandboxFailed, SessionClosed, TimedOut
from rock_core.protocol import CommandResult

from . import _collect, _expect, _oom, _wrap
from ._collect import Command
from ._runtime import Process
from ._signals import RunInside, Signals
from ._spill import OUTPUT_DIR, OnOutput, OpenSpill, Output
from ._start_failure import start_failure

READY_TIMEOUT = 15.0
START_TIMEOUT = 15.0  # seconds `start_interactive` waits for the command's start line

OpenExec = Callable[[list[str]], Awaitable[Process]]


class ShellSession:
    """One shell in one sandbox; commands on it run one at a time."""

    def __init__(
        self,
        name: str,
        process: Process,
        open_spill: OpenSpill | None,
    ) -> None:
        self.name = name
        self._process = process
        self.host_pid = 0
        self._open_spill = open_spill
        self.buffer = bytearray()
        self._lock = anyio.Lock(fast_acquire=True)  # free: taken with no trip through the loop
        self._eof = False
        self.closed = False
        self.bash = False
        self.commands = 0
        self.token = secrets.token_hex(8)
        self.sandbox_owner: tuple[int, str] = (-1, "")  # (uid, owner) of its sandbox
        self.oom_file: Path | None = None
        self.signals = Signals(None, 0)  # until the shell's pid is known
        self._interactive: Command | None = None

    # ------------------------------------------------------------------ start

    @classmethod
    async def open(
        cls,
        name: str,
        open_exec: OpenExec,
        open_spill: OpenSpill | None = None,
        run_inside: RunInside | None = None,
    ) -> ShellSession:
        """Start the shell and wait until it answers.

        `run_inside` runs the signal script in the sandbox, for when the kernel refuses the
        agent a signal (see `_signals`).
        """
        process = await open_exec(["/bin/sh", "-c", _wrap.BOOT])
        session = cls(name, process, open_spill)
        marker = _wrap.new_marker()
        await session.write(_wrap.setup(marker))
        found = None
        with anyio.move_on_after(READY_TIMEOUT):
            found = await session._read_until_end(marker)
        if found is None:
            text = bytes(session.buffer).decode(errors="replace").strip()
            await session.kill()
            head = f"session {name!r}: the shell did not start"
            # The runtime's refusal (a sandbox that stopped meanwhile, say) is typed as for execs.
            raise start_failure(text, head) or SandboxFailed(
                head + (f": {text}" if text else " (does the image have /bin/sh?)")
            )
        session.bash = found == 10
        # Only now is the process surely running; the engine may still need a moment to say so.
        pid, running = 0, False
        for _ in range(100):
            state = await process.state()
            pid, running = state.pid, state.running
            if pid > 1 and running:
                break
            await anyio.sleep(0.02)
        if pid <= 1 or not running:
            await session.kill()
            raise SandboxFailed(f"session {name!r}: the engine reports no process for the shell")
        session.host_pid = pid
        session.signals = Signals(run_inside, pid)
        session.oom_file = _oom.counter_file(pid)
        return session

    # ------------------------------------------------------------------ stream helpers

    async def write(self, data: bytes) -> None:
        """Write to the shell's input; `SessionClosed` if the shell is gone."""
        try:
            await self._process.write(data)
        except Exception as exc:  # aiohttp/engine errors: the shell is gone
            self._eof = True
            raise SessionClosed(f"session {self.name!r} is closed: {exc}") from exc

    async def fill(self) -> bool:
        """Read more output into the buffer; False at end of stream."""
        if self._eof:
            return False
        try:
            chunk = await self._process.read()
        except (anyio.get_cancelled_exc_class(), FileNotFound, BadRequest):
            raise  # cancelled, or the shell never started (the runtime says why)
        except Exception:
            chunk = None
        if chunk is None:
            self._eof = True
            return False
        if chunk.stream == "stdout":
            self.buffer += chunk.data
        return True

    async def _read_until_end(self, marker: bytes) -> int | None:
        """Read until `marker`'s end line; drop everything up to it; return its status."""
        while True:
            found = _wrap.find_end(self.buffer, [marker])
            if found is not None:
                del self.buffer[: found[3]]
                return found[2]
            if not await self.fill():
                return None

    # ------------------------------------------------------------------ commands

    def _begin(
        self, command: str, *, interactive: bool, output_limit: int, on_output: OnOutput | None
    ) -> tuple[Command, bytes]:
        self._check_usable()
        self.commands += 1
        token = f"{self.token}-{self.commands}"
        path = f"{OUTPUT_DIR}/{self.name}-{self.commands}-{secrets.token_hex(4)}.log"
        cmd = Command(
            marker=_wrap.new_marker(),
            mark=token.encode(),
            output=Output(output_limit, on_output, self._open_spill, path),
            interactive=interactive,
            oom_before=_oom.count(self.oom_file),
        )
        data = _wrap.wrap(command, cmd.marker, token, interactive=interactive, bash=self.bash)
        return cmd, data

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
        async with self._lock:
            cmd, data = self._begin(
                command, interactive=False, output_limit=output_limit, on_output=on_output
            )
            try:
                await self.write(data)
                result = await _collect.collect(self, cmd, time.monotonic(), timeout, idle_timeout)
                result.output_path = await cmd.output.finish()
                return result
            finally:
                await cmd.output.abort()

    async def exit_code(self) -> int | None:
        """The shell's exit code, once it has ended (None if the engine lost it)."""
        try:
            return await self._process.wait()
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
        """Start a command that reads the session's input; drive it with send/expect/wait.

        Returns once the command has started (its start line is out), so input sent next
        reaches the command, never the shell. `SessionClosed` if the shell ended first;
        `TimedOut` if the start line did not come within `START_TIMEOUT`: the shell may still
        read the command line later and then the session's input, so it is ended and the
        session is closed.
        """
        async with self._lock:
            cmd, data = self._begin(
                command, interactive=True, output_limit=output_limit, on_output=None
            )
            try:
                await self.write(data)
            except SessionClosed:
                self.closed = True
                raise
            # From here on the shell may run the command at any time: until the session is
            # closed, it is the session's interactive command (also when this call is cancelled).
            self._interactive = cmd
            alive = True
            with anyio.move_on_after(START_TIMEOUT):
                while alive and not cmd.begun:
                    _collect.skip_to_start(self.buffer, cmd, [cmd.marker])
                    alive = cmd.begun or await self.fill()
            if cmd.begun:
                return
            self._interactive = None
            said = bytes(self.buffer[-4096:]).decode(errors="replace")
            if not alive:
                self.closed = True
                raise SessionClosed(
                    f"session {self.name!r} is closed: its shell exited before the "
                    f"interactive command {command!r} started",
                    output=said,
                )
            await self.kill()
        raise TimedOut(
            f"session {self.name!r}: the interactive command {command!r} did not start within "
            f"{START_TIMEOUT:g} s (the shell did not run it); the session was closed, as the "
            "shell could still read later input as commands",
            output=said,
        )

    def _require_interactive(self) -> Command:
        if self.closed:
            raise SessionClosed(f"session {self.name!r} is closed (its shell has exited)")
        if self._interactive is None:
            raise BadRequest(f"session {self.name!r} has no interactive command running")
        return self._interactive

    async def send(self, data: bytes) -> None:
        """Write to the interactive command's input."""
        self._require_interactive()
        await self.write(data)

    async def expect(self, patterns: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        """Wait for output matching one of `patterns`: (index, before, match).

        Index -1 means the command ended first; `before` then holds its remaining output.
        Patterns see the last `_expect.WINDOW` bytes at most: older output is dropped from
        the search and kept as the command's output (its result counts it, and its output
        file holds it once past `output_limit`), so `before` holds at most that much.
        """
        cmd = self._require_interactive()
        search = await _expect.Search.open(patterns)
        async with self._lock:
            with anyio.move_on_after(timeout):
                while True:
                    found = _wrap.find_end(self.buffer, [cmd.marker, *cmd.recoveries])
                    if found is None and len(self.buffer) > _expect.WINDOW:
                        excess = len(self.buffer) - _expect.WINDOW
                        await cmd.output.add(bytes(self.buffer[:excess]))
                        del self.buffer[:excess]
                        search.dropped(excess)
                    end = len(self.buffer) if found is None else found[1]
                    best = await search.search(self.buffer, end, final=found is not None)
                    if best is not None:
                        index, start, stop = best
                        before, match = bytes(self.buffer[:start]), bytes(self.buffer[start:stop])
                        del self.buffer[:stop]
                        return index, before, match
                    if found is not None or not await self.fill():
                        visible = bytes(self.buffer[:end])
                        del self.buffer[:end]
                        return -1, visible, b""
        raise TimedOut(
            f"session {self.name!r}: no output matched {patterns!r} within {timeout:g} s",
            output=bytes(self.buffer[-4096:]).decode(errors="replace"),
        )

    async def wait(self, timeout: float | None) -> CommandResult:
        """Wait for the interactive command to end (interrupting it at the timeout)."""
        cmd = self._require_interactive()
        async with self._lock:
            try:
                remaining = None if timeout is None else max(0.0, timeout)
                result = await _collect.collect(self, cmd, time.monotonic(), remaining, None)
                result.output_path = await cmd.output.finish()
                return result
            finally:
                self._interactive = None
                await cmd.output.abort()

    async def interrupt(self) -> None:
        """SIGINT the running program, as Ctrl-C would; the session survives.

        When the shell itself runs the command (a shell loop), the shell is interrupted and
        writes a fresh end line, so `wait` still returns.
        """
        if self.closed:
            raise SessionClosed(f"session {self.name!r} is closed (its shell has exited)")
        cmd = self._interactive
        if cmd is None:
            await self.signals.send(signal.SIGINT, tree=self.host_pid)
            return
        program = await self.signals.command_pids(self.host_pid, cmd.mark, cmd.since)
        if program:
            # As Ctrl-C does without job control: the program and the shell. The shell then
            # abandons the command line if the program dies of it (a shell loop ends too),
            # and goes on if the program handles it; `wait` writes an end line once the
            # program is gone and the shell may be reading its input again.
            cmd.interrupted = True
            cmd.signalled = set(program)
            await _collect.signal_program(self, cmd, program, signal.SIGINT, with_shell=True)
        else:
            await _collect.interrupt_shell(self, cmd, [])

    # ------------------------------------------------------------------ end

    async def kill(self) -> None:
        """End the shell and everything it started, daemons included."""
        self.closed = True
        if self.host_pid > 1:
            mark = f"{self.token}-".encode()
            left = await self.signals.command_pids(self.host_pid, mark, 0, prefix=True)
            await self.signals.send(signal.SIGKILL, left, tree=self.host_pid, include_root=True)
        await self.abandon()

    async def abandon(self) -> None:
        """Close the shell's stream and read no more of it (the shell may go on)."""
        self.closed = self._eof = True
        await self._process.aclose()
