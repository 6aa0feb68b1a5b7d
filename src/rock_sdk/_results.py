"""What commands return to SDK users: text for convenience, bytes for exactness."""

from __future__ import annotations

import msgspec

from rock_core.protocol import CommandResult as WireCommandResult
from rock_core.protocol import ExecResult as WireExecResult


class CommandResult(msgspec.Struct, kw_only=True):
    """The result of a command in a session.

    `output` is stdout and stderr interleaved as they were written, decoded as UTF-8 (invalid
    bytes become U+FFFD); `output_bytes` is exact. `truncated` says the output passed the cap:
    `total_bytes` counts all of it and `output_path` names a file in the sandbox holding it.
    `oom_killed` says the kernel killed a process of the sandbox for memory while it ran (an
    exit code of 137 then means the memory limit, not a `kill -9`).
    """

    output: str
    output_bytes: bytes
    exit_code: int | None
    timed_out: bool = False
    idle_timed_out: bool = False
    truncated: bool = False
    total_bytes: int = 0
    output_path: str = ""
    session_closed: bool = False
    duration: float = 0.0
    oom_killed: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 and was not cut short."""
        return self.exit_code == 0 and not (self.timed_out or self.idle_timed_out)

    @classmethod
    def from_wire(cls, result: WireCommandResult, output: bytes | None = None) -> CommandResult:
        """Build from the protocol's result (`output` replaces its bytes when streamed)."""
        data = result.output if output is None else output
        return cls(
            output=data.decode("utf-8", errors="replace"),
            output_bytes=data,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            idle_timed_out=result.idle_timed_out,
            truncated=result.truncated,
            total_bytes=result.total_bytes,
            output_path=result.output_path,
            session_closed=result.session_closed,
            duration=result.duration,
            oom_killed=result.oom_killed,
        )


class ExecResult(msgspec.Struct, kw_only=True):
    """The result of a one-off command: stdout and stderr apart (`oom_killed` as for
    `CommandResult`). `truncated`: the command printed more than is kept (14 MiB of stdout,
    1 MiB of stderr); the rest was read and dropped."""

    stdout: str
    stderr: str
    stdout_bytes: bytes
    stderr_bytes: bytes
    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0
    oom_killed: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 in time."""
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_wire(cls, result: WireExecResult) -> ExecResult:
        """Build from the protocol's result."""
        return cls(
            stdout=result.stdout.decode("utf-8", errors="replace"),
            stderr=result.stderr.decode("utf-8", errors="replace"),
            stdout_bytes=result.stdout,
            stderr_bytes=result.stderr,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            duration=result.duration,
            oom_killed=result.oom_killed,
            truncated=result.truncated,
        )


def why_failed(result: CommandResult | ExecResult, memory: int) -> str:
    """How a command that did not succeed ended, in words, for `CommandFailed`.

    `memory` is the sandbox's memory limit in bytes.
    """
    if result.oom_killed:
        return (
            f"was killed by the kernel for memory (exit {result.exit_code}): the sandbox's memory"
            f" limit is {memory >> 20} MiB; give it more with SandboxConfig(memory=...)"
        )
    if result.timed_out or getattr(result, "idle_timed_out", False):
        return "timed out"
    return f"exited {result.exit_code}"


class ExpectMatch(msgspec.Struct, kw_only=True):
    """What `expect` found: which pattern (-1: the program ended first), the text before it."""

    index: int
    before: str
    match: str
