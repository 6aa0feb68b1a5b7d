"""Messages of terminals: an interactive program in a sandbox on a real pseudo-terminal.

Rules:
- Built on the base messages of `_messages` (same tag field, same request ids), joined into
  the unions of `_protocol`. An agent that serves them announces the capability "terminal";
  a client checks it before sending (`AgentConnection.require`).
- `OpenTerminal` carries its bytes both ways exactly as `ForwardPort` carries a connection:
  the agent grants `StreamCredit` once the program runs, both sides send `StreamData` under
  the other's credit, and an ``end`` chunk ends that direction. The caller's ``end`` is an
  end-of-file typed at the terminal (a ``^D``): a terminal has no end of input of its own.
  When the program's output ends, the agent sends its ``end``; once the caller has sent
  its own, the reply is `TerminalReply` with the program's exit code.
- A terminal's size is rows by columns, each 1 to `MAX_TERMINAL_SIDE`; `ResizeTerminal`
  names the open terminal by the id of its `OpenTerminal` on the same link.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ._messages import Reply, Request
from ._schema import AbsPathOrEmpty, Env, RequestId, SandboxId, Text

#: The largest number of rows or columns a terminal may have (a kernel's window size is 16 bits).
MAX_TERMINAL_SIDE = 10_000
#: Rows or columns of a terminal.
TerminalSide = Annotated[int, msgspec.Meta(ge=1, le=MAX_TERMINAL_SIDE)]
#: A program and its arguments, or none for the sandbox's shell (bash if present, else sh).
ShellArgv = Annotated[list[Text], msgspec.Meta(max_length=65536)]


class OpenTerminal(Request, tag="terminal"):
    """Run `argv` (none: the sandbox's shell) on a new pseudo-terminal of `rows` x `cols` and
    carry its bytes both ways as a two-way stream (see the module's rules)."""

    sandbox_id: SandboxId
    argv: ShellArgv = msgspec.field(default_factory=list)
    env: Env = msgspec.field(default_factory=dict)
    cwd: AbsPathOrEmpty = ""
    rows: TerminalSide = 24
    cols: TerminalSide = 80


class ResizeTerminal(Request, tag="terminal_resize"):
    """Set the size of the terminal opened by request `terminal` on this link (its program
    gets SIGWINCH). Answered with `Done`; `NotFound` if that terminal is not open."""

    sandbox_id: SandboxId
    terminal: RequestId
    rows: TerminalSide
    cols: TerminalSide


class TerminalReply(Reply, tag="terminal_exit"):
    """Answer to `OpenTerminal` once its program has ended and both directions are done."""

    exit_code: int | None  # None: the program let go of its terminal but has not ended
    bytes_in: int = 0  # bytes typed into the terminal
    bytes_out: int = 0  # bytes the terminal showed


__all__ = [
    "MAX_TERMINAL_SIDE",
    "OpenTerminal",
    "ResizeTerminal",
    "ShellArgv",
    "TerminalReply",
    "TerminalSide",
]
