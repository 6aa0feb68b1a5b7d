"""Driving an interactive program in a session: expect patterns, send input, wait for the end."""

from __future__ import annotations

from rock_core import Cluster
from rock_core.protocol import (
    CommandReply,
    Done,
    Expect,
    ExpectReply,
    Interrupt,
    SendInput,
    WaitCommand,
)

from . import _arguments as args
from ._results import CommandResult, ExpectMatch


class InteractiveProcess:
    """A program started with `Sandbox.start_interactive`."""

    def __init__(self, cluster: Cluster, sandbox_id: str, session: str) -> None:
        self._cluster = cluster
        self.sandbox_id = sandbox_id
        self.session = session

    async def send(self, data: str | bytes) -> None:
        """Write to the program's input."""
        payload = args.data(data)
        await self._cluster.call(
            self.sandbox_id,
            SendInput(sandbox_id=self.sandbox_id, session=self.session, data=payload),
            Done,
        )

    async def sendline(self, line: str = "") -> None:
        """Write a line to the program's input."""
        await self.send(args.text(line, "line") + "\n")

    async def expect(self, *patterns: str, timeout: float = 30.0) -> ExpectMatch:
        """Wait for output matching one of the regular expressions; `TimedOut` if none does.

        The returned `index` is -1 when the program ended before any pattern matched.
        """
        reply = await self._cluster.call(
            self.sandbox_id,
            Expect(
                sandbox_id=self.sandbox_id,
                session=self.session,
                patterns=list(patterns),
                timeout=timeout,
            ),
            ExpectReply,
        )
        return ExpectMatch(
            index=reply.index,
            before=reply.before.decode("utf-8", errors="replace"),
            match=reply.match.decode("utf-8", errors="replace"),
        )

    async def interrupt(self) -> None:
        """SIGINT to the program and its shell, as Ctrl-C would; `wait` then returns."""
        await self._cluster.call(
            self.sandbox_id,
            Interrupt(sandbox_id=self.sandbox_id, session=self.session),
            Done,
        )

    async def wait(self, timeout: float | None = None) -> CommandResult:
        """Wait for the program to end (interrupting it at `timeout`) and return its result."""
        reply = await self._cluster.call(
            self.sandbox_id,
            WaitCommand(sandbox_id=self.sandbox_id, session=self.session, timeout=timeout),
            CommandReply,
        )
        return CommandResult.from_wire(reply.result)
