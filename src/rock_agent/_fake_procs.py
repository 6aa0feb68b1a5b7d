"""The processes of a fake sandbox: real local processes, started in the sandbox's folder.

Rules:
- A process is the argv given, run on this host (`/bin/sh` is the host's) by anyio, with its
  working folder mapped under the sandbox's root; everything else it sees is the host's file
  system. It starts in a session of its own and carries `MARK=<container id>` in its
  environment, so a sandbox's stop finds all of its processes, those that left the tree too.
- A process starts with the default handling of the signals a container's processes get it
  for, whatever this process ignores (an agent run by `nohup`, or as a shell's background job,
  ignores SIGHUP, or SIGINT and SIGQUIT): then it starts through a launcher that restores it
  (`launched`), so an interrupt or a hang-up reaches it as in a container.
- What cannot start is refused as the engine refuses it, with the same messages (a missing
  working folder or program is `FileNotFound`), but at once, when the process is opened.
- Output comes as (stream, data) messages, stdout (1) and stderr (2) interleaved as they are
  read; the end of both is the end of the output. Closing the input gives the process
  end-of-file. Exit codes are the process's; a process killed by a signal exits 128 + signal,
  as a shell reports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

from rock_core import BadRequest, FileNotFound, RockError, TransportError

from . import _procs
from ._fake_files import host_path
from ._runtime import OutputChunk, OutputStream, ProcessState

MARK = b"ROCK_FAKE_SANDBOX"  # names the fake container a process belongs to
WAIT_EXIT = 1.0  # seconds `wait` gives a process whose output has ended


# The signals a container's processes start with the default handling of, that this process
# may ignore (module rules), and the launcher's lines that restore them, with the two a python
# ignores itself (SIGPIPE, SIGXFSZ: subprocess restores those when no launcher runs).
DEFAULT_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
_RESTORED = (*DEFAULT_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ)
RESTORE_SIGNALS = (
    "import os, signal, sys\n"
    f"for number in {tuple(int(s) for s in _RESTORED)}:\n"
    "    signal.signal(number, signal.SIG_DFL)\n"
)
_LAUNCHER = RESTORE_SIGNALS + (
    "try:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "except OSError as exc:\n"
    "    sys.exit(f'{sys.argv[1]}: {exc.strerror}')\n"
)


def launched(argv: Sequence[str]) -> list[str]:
    """`argv` as it is started: through the launcher if this process ignores a signal of
    `DEFAULT_SIGNALS` (module rules), else as it is."""
    if all(signal.getsignal(number) is not signal.SIG_IGN for number in DEFAULT_SIGNALS):
        return list(argv)
    return [sys.executable, "-c", _LAUNCHER, *argv]


class FakeProcess:
    """One local process of a fake sandbox (a `Process`), or one that could not start."""

    def __init__(
        self, sandbox_id: str, process: Process | None, failure: RockError | None = None
    ) -> None:
        self._sandbox_id = sandbox_id
        self._process = process
        self._failure = failure
        self._pending: deque[OutputChunk] = deque()
        self._open: dict[OutputStream, ByteReceiveStream] = {}
        if process is not None and process.stdout is not None:
            self._open["stdout"] = process.stdout
        if process is not None and process.stderr is not None:
            self._open["stderr"] = process.stderr

    @property
    def sandbox_id(self) -> str:
        """The sandbox it runs in."""
        return self._sandbox_id

    @property
    def ended(self) -> bool:
        """True once it has ended (or never started)."""
        return self._process is None or self._process.returncode is not None

    @property
    def exit_code(self) -> int | None:
        """Its exit code once ended, as `state` says it (None while it runs)."""
        return 127 if self._process is None else _status(self._process.returncode)

    async def read(self) -> OutputChunk | None:
        """The next piece of output; None once stdout and stderr have both ended."""
        if self._failure is not None:
            raise self._failure
        while not self._pending and self._open:
            async with anyio.create_task_group() as tg:
                for name, stream in list(self._open.items()):
                    tg.start_soon(self._pull, name, stream, tg.cancel_scope)
        return self._pending.popleft() if self._pending else None

    async def _pull(
        self, name: OutputStream, stream: ByteReceiveStream, scope: anyio.CancelScope
    ) -> None:
        # A receive cancelled while it waits takes nothing: no output is lost in the race.
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._open.pop(name, None)
        else:
            self._pending.append(OutputChunk(name, data))
        scope.cancel()

    async def write(self, data: bytes) -> None:
        """Write to its stdin (`TransportError` once the process no longer takes input)."""
        if self._failure is not None:
            raise self._failure
        stdin = self._process.stdin if self._process is not None else None
        what = f"writing to a process in sandbox {self._sandbox_id}"
        if stdin is None:
            raise TransportError(f"{what}: it was started without input")
        try:
            await stdin.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise TransportError(f"{what}: the stream is closed") from exc

    async def resize(self, rows: int, cols: int) -> None:
        """A process started without a terminal has none to resize: `BadRequest`."""
        raise BadRequest(f"a process in sandbox {self._sandbox_id} has no terminal to resize")

    async def close_input(self) -> None:
        """End its stdin: the process reads end-of-file."""
        if self._process is not None and self._process.stdin is not None:
            with contextlib.suppress(Exception):
                await self._process.stdin.aclose()

    async def state(self) -> ProcessState:
        """Its host pid, exit code and whether it runs (pid 0: it never started)."""
        if self._process is None:
            return ProcessState(0, 127, False)
        code = self._process.returncode
        return ProcessState(self._process.pid, _status(code), code is None)

    async def wait(self) -> int | None:
        """Its exit code; None if it still runs `WAIT_EXIT` seconds on."""
        if self._process is None:
            return 127
        with anyio.move_on_after(WAIT_EXIT):
            return _status(await self._process.wait())
        return None

    async def wait_forever(self) -> None:
        """Wait, with no bound, until it has ended."""
        if self._process is not None:
            await self._process.wait()

    async def aclose(self) -> None:
        """Stop reading it (the process may go on; its further output is dropped)."""
        await self.close_input()
        for stream in list(self._open.values()):
            with contextlib.suppress(Exception):
                await stream.aclose()
        self._open.clear()

    def kill(self) -> None:
        """SIGKILL the process, if it runs."""
        if self._process is not None and self._process.returncode is None:
            # Not `Process.kill`: Popen polls first, reaping the child behind asyncio's back
            # (whose watcher then reports exit code 255).
            _procs.signal_pids([self._process.pid], signal.SIGKILL)

    async def reap(self) -> None:
        """After a kill: wait for the process to end, and close its pipes."""
        if self._process is not None:
            with anyio.CancelScope(shield=True):
                await self._process.wait()
                await self.aclose()


def _status(code: int | None) -> int | None:
    """A return code as a shell reports it (killed by signal N: 128 + N)."""
    return None if code is None else exit_status(code)


def exit_status(code: int) -> int:
    """A Popen return code as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - code if code < 0 else code


async def start(
    root: Path,
    sandbox_id: str,
    container_id: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str,
    stdin: bool,
    output: tuple[int, int] | None = None,
) -> FakeProcess:
    """Start `argv` for a sandbox (see the rules), its stdout and stderr into the file
    descriptors `output` if given (then it has no output to `read`). One that cannot start is
    a handle that raises the engine's error for it from `read` and `write`."""
    program = argv[0] if argv else ""
    head = f"cannot run {program!r} in sandbox {sandbox_id}"
    folder = host_path(root, cwd or "/")
    failure = refusal(folder, sandbox_id, argv, env, cwd)
    if failure is not None:
        return FakeProcess(sandbox_id, None, failure)
    try:
        process = await anyio.open_process(
            launched(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if output is None else output[0],
            stderr=subprocess.PIPE if output is None else output[1],
            cwd=folder,
            env={**env, MARK.decode(): container_id},
            start_new_session=True,
        )
    except PermissionError:
        failure = BadRequest(f"{head}: {program} cannot be run: permission denied")
    except OSError as exc:
        failure = BadRequest(f"{head}: {program} cannot be run: {exc.strerror or exc}")
    if failure is not None:
        return FakeProcess(sandbox_id, None, failure)
    return FakeProcess(sandbox_id, process)


def refusal(
    folder: Path, sandbox_id: str, argv: Sequence[str], env: dict[str, str], cwd: str
) -> RockError | None:
    """The engine's error for a process that cannot start in host folder `folder`, or None."""
    program = argv[0] if argv else ""
    head = f"cannot run {program!r} in sandbox {sandbox_id}"
    if not folder.is_dir():
        return FileNotFound(f"{head}: its working folder {cwd} does not exist")
    if "/" not in program and shutil.which(program, path=env.get("PATH")) is None:
        return FileNotFound(f"{head}: program {program!r} not found on the PATH")
    if "/" in program and not os.path.exists(program):
        return FileNotFound(f"{head}: {program} not found")
    if "/" in program and not os.access(program, os.X_OK):  # also when `launched` runs it
        return BadRequest(f"{head}: {program} cannot be run: permission denied")
    return None


def marked(container_id: str) -> list[int]:
    """Every live process of this host carrying the fake container's mark."""
    found = []
    for entry in _procs.PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if _procs.value_of(environ, MARK) == container_id.encode():
            found.append(int(entry.name))
    return found


def usage(pids: list[int]) -> tuple[int, int]:
    """(cpu nanoseconds, resident bytes) the processes `pids` use now, summed."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = memory = 0
    for pid in pids:
        try:
            fields = (_procs.PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            pages = (_procs.PROC / str(pid) / "statm").read_text().split()[1]
        except (OSError, IndexError):
            continue
        cpu += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // ticks
        memory += int(pages) * page
    return cpu, memory


def kill_marked(container_id: str) -> None:
    """SIGKILL every process of a fake container (its daemons too)."""
    _procs.signal_pids(marked(container_id), signal.SIGKILL)


__all__ = [
    "MARK",
    "FakeProcess",
    "exit_status",
    "kill_marked",
    "marked",
    "refusal",
    "start",
    "usage",
]
