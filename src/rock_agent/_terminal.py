"""Terminals, agent side: one program on a pseudo-terminal per `OpenTerminal` request.

Rules:
- The program runs through the runtime on a terminal (`ContainerRuntime.exec`); with no argv
  it is the sandbox's shell, bash if the image has it, else sh. ``TERM`` is ``xterm`` unless
  the request sets it.
- Its bytes travel exactly as a forwarded port's do (`_ports.carry`: credit both ways, one
  chunk per read, an ``end`` each way): the program's terminal is seen as a byte stream
  (`TerminalStream`). The caller's ``end`` is a ``^D`` typed at the terminal (two after a
  partial line: the first only sends the line); what the caller
  types after the program ended is dropped, as a terminal whose program is gone drops it.
- The reply is the program's exit code once both directions are done. A program that cannot
  start ends the output at once, and the reply is the runtime's error for it
  (`FileNotFound`, `BadRequest`), not a broken stream.
- A terminal abandoned before its reply (the caller left, its link broke) is hung up: its
  program and what it started get SIGHUP, as on a real terminal that closes.
- An open terminal is known by (its connection, its request id) while its request runs, so
  `ResizeTerminal` reaches only terminals of its own link; it is forgotten on every exit.
"""

from __future__ import annotations

import signal
from typing import Any, Protocol

import anyio
from anyio.abc import ByteStream

from rock_core import NotFound, RockError, TransportError
from rock_core.protocol import Done, OpenTerminal, Reply, ResizeTerminal, TerminalReply
from rock_core.serving import CHUNK_SIZE

from ._ports import carry
from ._runtime import ContainerRuntime, Process
from ._signals import Signals, exec_inside

#: The sandbox's shell: bash if the image has it, else sh (every image has /bin/sh).
DEFAULT_SHELL = [
    "/bin/sh",
    "-c",
    "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi",
]
DEFAULT_TERM = "xterm"
END_OF_INPUT = b"\x04"  # ^D: what a terminal's user types to end its input
EXIT_WAITS = 5  # looks at the exit code of a program whose terminal has closed
HANGUP_BOUND = 10.0  # seconds the hang-up of an abandoned terminal may take


class Terminals(dict[tuple[Any, int], Process]):
    """The terminals open on an agent, by (connection, request id)."""


class _Server(Protocol):
    runtime: ContainerRuntime
    terminals: Terminals


class TerminalStream(ByteStream):
    """A process on a terminal as a byte stream: what it shows, and what is typed at it."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self._pending = b""
        self._line_started = False  # typed a partial line: one ^D only sends it
        # Why the program could not run, if it could not: the reply, not a broken stream.
        self.failure: RockError | None = None

    async def receive(self, max_bytes: int = CHUNK_SIZE) -> bytes:
        if not self._pending:
            try:
                chunk = await self._process.read()
            except RockError as exc:
                self.failure = self.failure or exc
                chunk = None
            if chunk is None:
                raise anyio.EndOfStream
            self._pending = chunk.data
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if item:
            self._line_started = item[-1:] not in (b"\n", b"\r")
        try:
            await self._process.write(item)
        except TransportError:
            pass  # its program has ended: typed into the void
        except RockError as exc:
            self.failure = self.failure or exc

    async def send_eof(self) -> None:
        # After a partial line, the first ^D sends the line; the second is the end of input.
        await self.send(END_OF_INPUT * (2 if self._line_started else 1))

    async def aclose(self) -> None:
        await self._process.aclose()


async def open_terminal(server: _Server, conn: Any, req: OpenTerminal) -> Reply:
    """Handler of `OpenTerminal`: run the program on a terminal and carry it both ways."""
    process = await server.runtime.exec(
        req.sandbox_id,
        list(req.argv) or DEFAULT_SHELL,
        env={"TERM": DEFAULT_TERM, **req.env},
        cwd=req.cwd,
        stdin=True,
        terminal=(req.rows, req.cols),
    )
    key = (conn, req.id)
    server.terminals[key] = process
    answered = False
    try:
        where = f"a terminal in sandbox {req.sandbox_id}"
        stream = TerminalStream(process)
        carried = await carry(conn, req.id, stream, where)
        if stream.failure is not None:
            raise stream.failure
        exit_code = None
        for _ in range(EXIT_WAITS):
            if (exit_code := await process.wait()) is not None:
                break
        answered = True
    finally:
        server.terminals.pop(key, None)
        with anyio.CancelScope(shield=True):
            if not answered:  # abandoned (the caller left, the link broke): hang it up
                with anyio.move_on_after(HANGUP_BOUND):
                    await _hang_up(server.runtime, req.sandbox_id, process)
            await process.aclose()
    return TerminalReply(
        id=req.id, exit_code=exit_code, bytes_in=carried.bytes_in, bytes_out=carried.bytes_out
    )


async def _hang_up(runtime: ContainerRuntime, sandbox_id: str, process: Process) -> None:
    """SIGHUP to the program and its descendants, as the kernel sends when a terminal closes
    (the engine leaves an exec running when its attached stream closes)."""
    try:
        pid = (await process.state()).pid
        if pid > 1:
            await Signals(exec_inside(runtime, sandbox_id), pid).send(
                signal.SIGHUP, tree=pid, include_root=True
            )
    except RockError:
        pass  # it ended, or its sandbox went meanwhile: nothing left to hang up


async def resize_terminal(server: _Server, conn: Any, req: ResizeTerminal) -> Reply:
    """Handler of `ResizeTerminal`: set the size of a terminal open on this link."""
    process = server.terminals.get((conn, req.terminal))
    if process is None or process.sandbox_id != req.sandbox_id:
        raise NotFound(
            f"no terminal {req.terminal} is open in sandbox {req.sandbox_id} on this link",
            sandbox_id=req.sandbox_id,
        )
    await process.resize(req.rows, req.cols)
    return Done(id=req.id)


__all__ = ["DEFAULT_SHELL", "TerminalStream", "Terminals", "open_terminal", "resize_terminal"]
