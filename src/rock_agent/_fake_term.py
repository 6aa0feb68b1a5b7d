"""The terminals of a fake sandbox: a local process on a real pseudo-terminal of this host.

Rules:
- A terminal process is a `FakeProcess` (same mark, session, working folder and refusals)
  whose stdin, stdout and stderr are the slave side of a new pseudo-terminal, which is also
  its controlling terminal: what the kernel's line discipline does (echo, ``^C`` to SIGINT
  of the foreground job, ``^D`` at the start of a line, SIGWINCH on a resize) is real.
- This side holds the master: writes are typed at the terminal, reads are what it shows,
  all as "stdout". The output ends when no process holds the terminal any more.
- A terminal has no end of input of its own: `close_input` does nothing (type ``^D``).
- Closing the master hangs the terminal up (SIGHUP to its session). Once its output has
  ended, the program is exiting: `aclose` gives it `WAIT_EXIT` to finish first, or a program
  that exits on its own could be reported as hung up.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
import termios
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio.abc import Process

from rock_core import BadRequest, RockError, TransportError

from ._fake_files import host_path
from ._fake_procs import MARK, RESTORE_SIGNALS, WAIT_EXIT, FakeProcess, refusal
from ._runtime import OutputChunk

# Run by the host's python before the program: restore the default handling of signals (as
# `_fake_procs.launched` does), take the terminal (fd 0) as the controlling terminal of the new
# session `start_new_session` made, then become the program.
_TAKE_TERMINAL = RESTORE_SIGNALS + (
    "import fcntl, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
MAX_SIDE = 0xFFFF  # a kernel window size is 16 bits a side


def set_size(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal `fd` (`BadRequest` for sizes out of range)."""
    if not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE):
        raise BadRequest(f"a terminal of {rows} x {cols} is out of range (1 to 65535 each)")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class FakeTerminal(FakeProcess):
    """One local process on a pseudo-terminal whose master this handle holds (a `Process`)."""

    def __init__(self, sandbox_id: str, process: Process, master: int) -> None:
        super().__init__(sandbox_id, process)
        self._master: int | None = master
        self._output_ended = False

    async def read(self) -> OutputChunk | None:
        """What the terminal shows next; None once no process holds it."""
        while (fd := self._master) is not None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            except OSError:  # EIO: the last process holding the terminal has ended
                data = b""
            if data:
                return OutputChunk("stdout", data)
            self._output_ended = True
            return None
        return None

    async def write(self, data: bytes) -> None:
        """Type `data` at the terminal (`TransportError` once it is closed)."""
        what = f"typing at a terminal in sandbox {self.sandbox_id}"
        view = memoryview(data)
        while view:
            fd = self._master
            if fd is None:
                raise TransportError(f"{what}: it is closed")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(fd)
            except OSError as exc:
                raise TransportError(f"{what}: {exc.strerror or exc}") from exc

    async def close_input(self) -> None:
        """Nothing: a terminal has no end of input of its own (type ``^D``)."""

    async def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's size; its foreground job gets SIGWINCH."""
        if self._master is None:
            raise TransportError(f"a terminal in sandbox {self.sandbox_id} is closed")
        set_size(self._master, rows, cols)

    async def aclose(self) -> None:
        """Close the master (the process may go on; it loses its terminal)."""
        if self._output_ended and self._master is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(WAIT_EXIT):
                await self.wait_forever()
        fd, self._master = self._master, None
        if fd is not None:
            anyio.notify_closing(fd)
            os.close(fd)


async def start_terminal(
    root: Path,
    sandbox_id: str,
    container_id: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str,
    size: tuple[int, int],
) -> FakeProcess:
    """Start `argv` on a new terminal of `size` (rows, cols); one that cannot start is a
    handle that raises the engine's error for it, as `_fake_procs.start` makes."""
    folder = host_path(root, cwd or "/")
    failure: RockError | None = refusal(folder, sandbox_id, argv, env, cwd)
    if failure is not None:
        return FakeProcess(sandbox_id, None, failure)
    master, slave = os.openpty()
    try:
        set_size(master, *size)
        os.set_blocking(master, False)
        process = await anyio.open_process(
            [sys.executable, "-c", _TAKE_TERMINAL, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=folder,
            env={**env, MARK.decode(): container_id},
            start_new_session=True,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return FakeTerminal(sandbox_id, process, master)


__all__ = ["FakeTerminal", "set_size", "start_terminal"]
