"""One-off commands: argv, cwd, env and stdin, with stdout and stderr kept apart.

Rules:
- One engine exec per command (not the hot path: sessions are). Stdin is written, then closed,
  so a program reading it sees end-of-file.
- A timeout kills the command's whole process tree and returns what it printed so far (from
  inside the sandbox when the kernel refuses the agent: see `_signals`).
- A program that cannot be started is an error (the runtime raises `FileNotFound` or
  `BadRequest` naming the cause), not a result.
- Output is bounded: the first `STDOUT_LIMIT` bytes of stdout and `STDERR_LIMIT` of stderr are
  kept (together they fit one reply's frame); the rest is read and dropped, so a flood neither
  blocks the program nor grows the agent, and `truncated` says so (as a session's result
  does). Whole large output goes through a session command (`arun`, `on_output`/output_path).
- `oom_killed` says the kernel killed a process of the sandbox for memory while the command
  ran (`_oom`; the sandbox's count is read before the command starts and after it ends).
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import anyio

from rock_core import RockError, SandboxFailed, TransportError
from rock_core.protocol import MAX_DATA, ExecResult

from . import _oom
from ._runtime import ContainerRuntime, Process
from ._signals import Signals, exec_inside

STDERR_LIMIT = 1 << 20  # stderr is for messages; stdout gets the rest of a reply's room
STDOUT_LIMIT = MAX_DATA - STDERR_LIMIT


async def execute(
    runtime: ContainerRuntime,
    sandbox_id: str,
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    stdin: bytes,
    timeout: float | None,
) -> ExecResult:
    """Run a one-off command in a sandbox with stdout and stderr apart."""
    started = time.monotonic()
    oom_file = await find_oom_file(runtime, sandbox_id)
    oom_before = _oom.count(oom_file)
    process = await runtime.exec(sandbox_id, argv, env=env, cwd=cwd, stdin=True)
    out = bytearray()
    err = bytearray()
    timed_out = truncated = False
    try:
        if stdin:
            # A program that ends without reading all of its input still has a result; a
            # program that never started is raised by the runtime when its stream ends.
            with contextlib.suppress(TransportError):
                await process.write(stdin)
        # Closing our half of the stream gives the process end-of-file on its stdin.
        await process.close_input()
        with anyio.move_on_after(timeout) as scope:
            while True:
                chunk = await process.read()
                if chunk is None:
                    break
                stdout = chunk.stream == "stdout"
                kept, limit = (out, STDOUT_LIMIT) if stdout else (err, STDERR_LIMIT)
                room = limit - len(kept)
                kept += chunk.data[: max(0, room)]
                truncated = truncated or len(chunk.data) > room
        if scope.cancelled_caught:
            timed_out = True
            await kill_tree(runtime, sandbox_id, process)
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()
    exit_code = await process.wait()
    if exit_code is None and not timed_out:
        raise SandboxFailed(f"command {argv[0]!r} in sandbox {sandbox_id} has no exit code")
    return ExecResult(
        stdout=bytes(out),
        stderr=bytes(err),
        exit_code=exit_code,
        timed_out=timed_out,
        duration=time.monotonic() - started,
        oom_killed=_oom.grew(oom_file, oom_before),
        truncated=truncated,
    )


async def kill_tree(runtime: ContainerRuntime, sandbox_id: str, process: Process) -> None:
    """SIGKILL a one-off command and every process it started."""
    pid = (await process.state()).pid
    signals = Signals(exec_inside(runtime, sandbox_id), pid)
    await signals.send(signal.SIGKILL, tree=pid, include_root=True)


async def find_oom_file(runtime: ContainerRuntime, sandbox_id: str) -> Path | None:
    """The OOM-kill counter of the sandbox, found from its init process."""
    try:
        pid = (await runtime.container(sandbox_id)).pid
    except RockError:
        return None
    return _oom.counter_file(pid) if pid > 1 else None


__all__ = ["STDERR_LIMIT", "STDOUT_LIMIT", "execute", "find_oom_file", "kill_tree"]
