"""Reading one command of a session to its end line: timeouts, escalation, end lines.

Rules:
- Bytes before the command's start line are noise and dropped (at most `PRE_START_KEEP` are
  kept, in case no start line comes). Output is forwarded as it arrives, but for a tail that
  could still become an end line.
- Timeouts escalate (see `_shell`): SIGINT to the shell and the command's processes with a
  fresh end line, then SIGKILL to the command's processes, then the shell itself. For an
  interactive command, whose program may read the shell's input, nothing is written while one
  of its processes lives. Otherwise each round writes a fresh end line after its SIGINT to the
  shell: ash, acting on a SIGINT, throws away what it has read and not yet run, end lines
  included, and a shell slow to read (under load) may act on it only after reading them.
- At a timeout everything the command started is killed, daemons included (`_signals`: from
  the host, or from inside the sandbox when the kernel refuses the agent).
- Escalation is bounded: a shell that still has not ended `ABANDON_ROUNDS` rounds after it was
  killed (nothing could signal it) is given up: its stream is closed and the result says the
  session closed. A caller never waits on a process the agent cannot end.
- A command ends at its end line or at any of its fresh end lines, whichever comes first; the
  others are noise before the next command's start line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from rock_core.protocol import CommandResult

from . import _oom, _procs, _wrap
from ._signals import Signals
from ._spill import Output

log = logging.getLogger(__name__)

ESCALATION_STEP = 0.5  # seconds between escalation rounds
ESCALATION_ROUNDS = 4  # rounds before the shell itself is killed
ABANDON_ROUNDS = 4  # rounds after that before a shell that will not die is given up
WATCH_STEP = 0.1  # seconds between looks for the end of an interrupted program
# After an interrupt, a fresh end line again if none came within this many seconds (a shell
# acting late on its SIGINT may throw away the one it had read: bash without readline
# does), at most INTERRUPT_LINES in all.
INTERRUPT_RETRY = 1.0
INTERRUPT_LINES = 4
COPY_VIEW = 4096  # output slices this large are copied through a memoryview, once
PRE_START_KEEP = 1 << 16  # bytes kept from before a start line (they are output if none comes)


class Shell(Protocol):
    """What reading a command needs of its session."""

    name: str
    buffer: bytearray
    host_pid: int
    bash: bool
    closed: bool
    oom_file: Path | None
    signals: Signals

    async def fill(self) -> bool: ...
    async def write(self, data: bytes) -> None: ...
    async def exit_code(self) -> int | None: ...
    async def abandon(self) -> None: ...


@dataclass
class Command:
    """One command in flight: its marker lines and what it printed."""

    marker: bytes
    mark: bytes  # its `ROCK_CMD` value, in the environment of everything it starts
    output: Output
    interactive: bool
    since: int = field(default_factory=_procs.now_ticks)  # start, in /proc clock ticks
    started: float = field(default_factory=time.monotonic)
    oom_before: int | None = None
    begun: bool = False  # its start line was seen
    interrupted: bool = False  # `interrupt` signalled the shell: it may abandon the line
    recoveries: list[bytes] = field(default_factory=list)
    recovered_at: float = 0.0  # when the last end line was written (monotonic)
    signalled: set[int] = field(default_factory=set)  # the processes `interrupt` signalled
    reinterrupts: int = 0  # SIGINTs again to a shell that went on (`after_interrupt`)


async def collect(
    shell: Shell,
    cmd: Command,
    started: float,
    timeout: float | None,
    idle_timeout: float | None,
) -> CommandResult:
    """Read `cmd` to its end line (or the shell's end) and return its result."""
    deadline = None if timeout is None else started + timeout
    markers = [cmd.marker, *cmd.recoveries]
    timed_out = idle_timed_out = False
    escalation = 0
    next_escalation = 0.0
    status: int | None = None
    last_output = time.monotonic()
    while True:
        if not cmd.begun:
            skip_to_start(shell.buffer, cmd, markers)
        found = _wrap.find_end(shell.buffer, markers) if cmd.begun else None
        if found is not None:
            index, at, code, end = found
            await cmd.output.add(copy(shell.buffer, 0, at))
            del shell.buffer[:end]
            if index == 0:
                status = code
                if len(markers) == 1:
                    break
                markers[0] = b""  # seen; now wait for the recovery marker
                continue
            if status is None:
                status = code
            break
        if cmd.begun:
            # Forward all but a tail that could still become a marker line.
            keep = _wrap.held_back(shell.buffer, markers)
            if len(shell.buffer) > keep:
                forward = len(shell.buffer) - keep
                await cmd.output.add(copy(shell.buffer, 0, forward))
                del shell.buffer[:forward]
        now = time.monotonic()
        wait = _next_wait(now, deadline, idle_timeout, last_output, escalation, next_escalation)
        watching = cmd.interrupted and len(cmd.recoveries) < INTERRUPT_LINES
        if watching:
            wait = WATCH_STEP if wait is None else min(wait, WATCH_STEP)
        got = True
        with anyio.move_on_after(wait) if wait is not None else contextlib.nullcontext():
            got = await shell.fill()
            if got:
                last_output = time.monotonic()
                continue
        if not got:
            # The shell is gone (`exit`, `set -e`, killed): report what it said and close.
            at = 0 if cmd.begun else max(0, _wrap.find_start(shell.buffer, cmd.marker))
            await cmd.output.add(copy(shell.buffer, at, len(shell.buffer)))
            shell.buffer.clear()
            status = await shell.exit_code()
            shell.closed = True
            return result(shell, cmd, status, timed_out, idle_timed_out, True)
        if watching:
            recovery = await after_interrupt(shell, cmd)
            if recovery is not None:
                markers.append(recovery)
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
        recovery = await escalate(shell, cmd, escalation)
        if recovery is not None:
            markers.append(recovery)
    if timed_out or idle_timed_out:
        # Background jobs ignore SIGINT; kill what this command started, nothing older.
        program = await shell.signals.command_pids(shell.host_pid, cmd.mark, cmd.since)
        await signal_program(shell, cmd, program, signal.SIGKILL)
    return result(shell, cmd, status, timed_out, idle_timed_out, False)


def copy(buffer: bytearray, start: int, stop: int) -> bytes:
    """`buffer[start:stop]` as bytes, copied once when large (a slice of a bytearray is a copy
    already; for a few bytes the second copy is cheaper than the view that avoids it)."""
    if stop - start < COPY_VIEW:
        return bytes(buffer[start:stop])
    with memoryview(buffer) as view, view[start:stop] as part:
        return bytes(part)


def skip_to_start(buffer: bytearray, cmd: Command, markers: list[bytes]) -> None:
    """Drop the noise before the command's start line, once it is in the buffer."""
    at = _wrap.find_start(buffer, cmd.marker)
    if at >= 0:
        del buffer[:at]
        cmd.begun = True
    elif _wrap.find_end(buffer, markers) is not None:
        cmd.begun = True  # no start line (a syntax error on line 1): all of it is output
    elif len(buffer) > PRE_START_KEEP:
        del buffer[: len(buffer) - PRE_START_KEEP]


async def escalate(shell: Shell, cmd: Command, step: int) -> bytes | None:
    """One escalation round; returns a recovery marker if it wrote one."""
    signals = shell.signals
    if step > ESCALATION_ROUNDS + ABANDON_ROUNDS:
        log.warning("session %r: its shell does not die; giving it up", shell.name)
        await shell.abandon()
        return None
    if step > ESCALATION_ROUNDS:
        await signals.send(signal.SIGKILL, tree=shell.host_pid, include_root=True)
        return None
    program = await signals.command_pids(shell.host_pid, cmd.mark, cmd.since)
    if cmd.interactive and (program or cmd.recoveries):
        # A program may read the shell's input: signal it, and write nothing.
        await signal_program(shell, cmd, program, signal.SIGINT if step == 1 else signal.SIGKILL)
        return None
    if step == 1 or not cmd.recoveries:
        # The shell first: a shell whose child dies of SIGINT before the shell gets its own
        # may go on to the command line's next command.
        return await interrupt_shell(shell, cmd, program)
    await signal_program(shell, cmd, program, signal.SIGKILL)
    await signals.send(signal.SIGINT, [shell.host_pid])
    # Ash, acting on a SIGINT, throws away what it has read and not yet run: the end lines
    # too, when it was slow to read them (under load). A fresh one after each SIGINT.
    return await end_line(shell, cmd)


async def after_interrupt(shell: Shell, cmd: Command) -> bytes | None:
    """One look at an interrupted command; returns a recovery marker if it wrote an end line.

    - Its program is gone: if the shell abandoned the command line, it now reads its input,
      and only an end line written now can end the wait (again after `INTERRUPT_RETRY`, if
      the last one was thrown away).
    - Only processes the SIGINT did not reach run: the shell went on with the line. A shell
      without job control that gets its SIGINT while it waits for a child that did not
      (started between the listing and the signal) takes the child's normal exit for a
      handled SIGINT and goes on with a loop. The shell and those are interrupted again.
    """
    program = await shell.signals.command_pids(shell.host_pid, cmd.mark, cmd.since)
    if program:
        if cmd.signalled.isdisjoint(program) and cmd.reinterrupts < INTERRUPT_LINES:
            cmd.reinterrupts += 1
            cmd.signalled = set(program)
            await signal_program(shell, cmd, program, signal.SIGINT, with_shell=True)
        return None
    if cmd.recoveries and time.monotonic() - cmd.recovered_at < INTERRUPT_RETRY:
        return None
    return await end_line(shell, cmd)


async def interrupt_shell(shell: Shell, cmd: Command, program: list[int]) -> bytes:
    """SIGINT the shell (it abandons its command line) and `program`; write an end line."""
    await signal_program(shell, cmd, program, signal.SIGINT, with_shell=True)
    return await end_line(shell, cmd)


async def signal_program(
    shell: Shell, cmd: Command, program: list[int], sig: int, *, with_shell: bool = False
) -> None:
    """Send `sig` to what `cmd` started (`program`, from `command_pids`; the shell's part of
    it as it is when the signal goes) and, first, to the shell if `with_shell`."""
    await shell.signals.send(
        sig, program, tree=shell.host_pid, include_root=with_shell, since=cmd.since
    )


async def end_line(shell: Shell, cmd: Command) -> bytes:
    """Write a line that prints a fresh marker and the last status.

    Twice: a shell interrupted inside its own `read` may still take the first line as
    that read's input (ash does) before it abandons the command line. A second end line
    that the shell runs too is noise before the next command's start line.
    """
    recovery = _wrap.new_marker()
    cmd.recoveries.append(recovery)
    cmd.recovered_at = time.monotonic()
    await shell.write(_wrap.recovery_line(recovery, bash=shell.bash) * 2)
    return recovery


def result(
    shell: Shell,
    cmd: Command,
    status: int | None,
    timed_out: bool,
    idle_timed_out: bool,
    closed: bool,
) -> CommandResult:
    """The result of `cmd` as it stands."""
    return CommandResult(
        output=bytes(cmd.output.head),
        exit_code=status,
        timed_out=timed_out,
        idle_timed_out=idle_timed_out,
        truncated=cmd.output.truncated,
        total_bytes=cmd.output.total,
        session_closed=closed,
        duration=time.monotonic() - cmd.started,
        oom_killed=_oom.grew(shell.oom_file, cmd.oom_before),
    )


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


__all__ = [
    "ABANDON_ROUNDS",
    "ESCALATION_ROUNDS",
    "ESCALATION_STEP",
    "Command",
    "Shell",
    "collect",
    "copy",
    "end_line",
    "escalate",
    "interrupt_shell",
    "result",
    "signal_program",
    "skip_to_start",
]
