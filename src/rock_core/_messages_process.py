"""Streamed one-off commands: a process whose stdin, stdout and stderr flow while it runs.

`Execute` holds a command's input and output whole in one frame each; `ExecuteStreamed`
streams them both ways, so a pipeline (`yes | rock run IMG -- head`) works with bounded
memory on both sides and the first bytes arrive before the last are written.

Rules:
- An agent that serves these announces the capability `EXEC_STREAM`; a client checks it first
  (`AgentConnection.require`): an older agent cannot decode the request.
- `ExecuteStreamed` starts `argv` as `Execute` does (cwd, env, timeout). With ``stdin`` the
  client sends the command's input as `StreamData` under the agent's credit, and the chunk
  with ``end`` closes the command's stdin; without it, the stdin is closed at once. When the
  command ends first, the rest of its input is dropped.
- Output comes as `ProcessOutput` events, stdout and stderr apart, each stream in order, each
  event under the client's credit (`StreamCredit`, one chunk each): a slow reader slows the
  command instead of growing the agent or the client.
- `output_limit` cuts each stream after that many bytes (the rest is read and dropped, and the
  result says `truncated`); None streams all of it.
- The reply is `ExecReply` with empty stdout and stderr (they were streamed). A cancelled
  request kills the command and the processes it started.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._messages import Message, Request
from ._schema import AbsPathOrEmpty, Argv, Env, SandboxId, Seconds

EXEC_STREAM = "exec-stream"
"""The capability of an agent that serves `ExecuteStreamed`."""

OUTPUT_CHUNK = 256 << 10  # the most bytes one `ProcessOutput` carries


class ExecuteStreamed(Request, tag="exec_stream"):
    """Run a one-off command (argv, no shell state) with its stdin, stdout and stderr streamed."""

    sandbox_id: SandboxId
    argv: Argv
    cwd: AbsPathOrEmpty = ""
    env: Env = msgspec.field(default_factory=dict)
    timeout: Seconds | None = None
    stdin: bool = False
    output_limit: Annotated[int, msgspec.Meta(ge=0, le=1 << 62)] | None = None


class ProcessOutput(Message, tag="exec_output"):
    """A chunk of a streamed command's stdout or stderr, in order within its stream."""

    id: int
    data: Annotated[bytes, msgspec.Meta(max_length=OUTPUT_CHUNK)]
    stream: Literal["stdout", "stderr"] = "stdout"


__all__ = ["EXEC_STREAM", "OUTPUT_CHUNK", "ExecuteStreamed", "ProcessOutput"]
