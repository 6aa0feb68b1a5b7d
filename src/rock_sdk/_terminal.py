"""Terminals: an interactive program in a sandbox on a real pseudo-terminal (`open_terminal`).

One `OpenTerminal` request carries the terminal both ways as credit-controlled `StreamData`,
exactly as a forwarded port is carried (see `rock_agent._terminal` for the agent's half).

Rules:
- A `Terminal` reads what the terminal shows (`receive`, b"" at the end) and types at it
  (`send`); `resize` sets its size (its program gets SIGWINCH); `close_input` types an
  end-of-file (``^D``); `wait` gives the program's exit code. `aclose` (or leaving
  ``async with``) abandons it: the agent closes the terminal.
- Once the program's output has ended, this side ends its own direction too (the reply needs
  both); what is sent after that is dropped, as a terminal whose program is gone drops it.
- Sizes, argv, env and cwd are checked against the protocol's schema before anything is sent:
  a bad value is a `BadRequest` in the caller's process. Errors of the program (it cannot
  start, the sandbox stopped) are raised by the `receive` or `wait` that meets them.
- `open_terminal` needs only an agent link, so a program holding a sandbox (`Sandbox`), and
  the command line acting on any owner's sandbox by id, open terminals the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from types import TracebackType

import anyio

from rock_core import AgentConnection, BadRequest, Cluster, RequestStream, TransportError
from rock_core.protocol import (
    Done,
    OpenTerminal,
    Reply,
    ResizeTerminal,
    StreamData,
    TerminalReply,
    raise_for_reply,
)
from rock_core.serving import CHUNK_SIZE, WINDOW

from . import _arguments as args


class Terminal:
    """A program on a pseudo-terminal in a sandbox (see `open_terminal`)."""

    def __init__(self, conn: AgentConnection, request: OpenTerminal) -> None:
        self._conn = conn
        self._request = request
        self._stack = contextlib.AsyncExitStack()
        self._answers: RequestStream | None = None
        self._sending = anyio.Lock()
        self._input_ended = False
        self._output_ended = False
        self._reply: Reply | None = None

    @property
    def sandbox_id(self) -> str:
        """The sandbox the terminal is in."""
        return self._request.sandbox_id

    async def _open(self) -> Terminal:
        self._answers = await self._stack.enter_async_context(
            self._conn.open_request(self._request)
        )
        await self._conn.grant(self._request.id, WINDOW)  # then one per chunk received
        return self

    async def send(self, data: bytes | str) -> None:
        """Type `data` at the terminal (str as UTF-8); dropped once its program has ended."""
        payload = args.data(data)
        for at in range(0, len(payload), CHUNK_SIZE):
            await self._send(payload[at : at + CHUNK_SIZE], end=False)

    async def close_input(self) -> None:
        """Type an end-of-file (``^D``) and send nothing more."""
        await self._send(b"", end=True)

    async def _send(self, data: bytes, *, end: bool) -> None:
        async with self._sending:
            if self._input_ended:
                return
            self._input_ended = end
            await self._conn.gate(self._request.id).take()
            await self._conn.send(StreamData(id=self._request.id, data=data, end=end))

    def _stream(self) -> RequestStream:
        if self._answers is None:
            raise BadRequest("the terminal is not open: get one from open_terminal()")
        return self._answers

    async def receive(self) -> bytes:
        """What the terminal shows next; b"" once its program's output has ended."""
        answers = self._stream()
        while not self._output_ended:
            message = await anext(answers, None)
            if isinstance(message, StreamData):
                if message.end:
                    self._output_ended = True
                    await self.close_input()  # the reply waits for both directions
                    break
                await self._conn.grant(self._request.id, 1)
                if message.data:
                    return message.data
            elif isinstance(message, Reply):
                self._output_ended = True
                self._reply = message
                raise_for_reply(message, TerminalReply, self._request)
        return b""

    async def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's size; its program gets SIGWINCH."""
        request = ResizeTerminal(
            sandbox_id=self.sandbox_id, terminal=self._request.id, rows=rows, cols=cols
        )
        await self._conn.call(request, Done)

    async def wait(self) -> int | None:
        """The program's exit code once it has ended (output not yet received is dropped);
        None if it let go of its terminal but still runs."""
        while self._reply is None:
            if not self._output_ended:
                await self.receive()
                continue
            message = await anext(self._stream(), None)
            if message is None:
                raise TransportError(f"the terminal in sandbox {self.sandbox_id} was closed")
            if isinstance(message, Reply):
                self._reply = message
        return raise_for_reply(self._reply, TerminalReply, self._request).exit_code

    async def aclose(self) -> None:
        """Leave the terminal (the agent closes it if its program still runs)."""
        await self._stack.aclose()

    async def __aenter__(self) -> Terminal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_terminal(
    conn: AgentConnection,
    sandbox_id: str,
    cmd: str | Sequence[str] | None = None,
    *,
    rows: int = 24,
    cols: int = 80,
    env: Mapping[str, str] | None = None,
    cwd: str = "",
) -> Terminal:
    """Open a terminal of `rows` x `cols` in sandbox `sandbox_id` through `conn`, running
    `cmd` (a shell command line, or an argv list; None: the sandbox's shell, bash if it has
    it, else sh)."""
    if cmd is None:
        argv: list[str] = []
    elif isinstance(cmd, str):
        argv = ["/bin/sh", "-c", cmd]
    else:
        argv = args.strings(cmd, "cmd", '["python3", "-i"]')
        if not argv:
            raise BadRequest("cmd must not be empty: give None for the sandbox's shell")
    request = OpenTerminal(
        sandbox_id=sandbox_id,
        argv=argv,
        env=args.env(env),
        cwd=args.text(cwd, "cwd"),
        rows=rows,
        cols=cols,
    )
    conn.require("terminal", "open a terminal")
    return await Terminal(conn, request)._open()


class SandboxTerminals:
    """The terminals of a `Sandbox` (a base class of it)."""

    @property
    def sandbox_id(self) -> str:
        """The sandbox's id."""
        raise NotImplementedError

    @property
    def cluster(self) -> Cluster:
        """The cluster that placed the sandbox."""
        raise NotImplementedError

    async def open_terminal(
        self,
        cmd: str | Sequence[str] | None = None,
        *,
        rows: int = 24,
        cols: int = 80,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
    ) -> Terminal:
        """Open a terminal in the sandbox (see `open_terminal`); ``await term.aclose()`` or
        ``async with`` it when done."""
        conn = self.cluster.connection(self.sandbox_id)
        return await open_terminal(
            conn, self.sandbox_id, cmd, rows=rows, cols=cols, env=env, cwd=cwd
        )


__all__ = ["SandboxTerminals", "Terminal", "open_terminal"]
