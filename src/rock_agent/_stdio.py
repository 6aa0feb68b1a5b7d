"""The agent's standard input and output as one byte stream (asyncio pipes).

File descriptor 1 is duplicated for the protocol and then pointed at stderr, so a stray
``print`` anywhere in the process can never corrupt the frame stream. The stream itself is the
core's pipe stream (`rock_core._pipes`: input in the pieces it came in, pipes widened, replies
written at once while the pipe has room), which a program also uses at its end of the pipes.
"""

from __future__ import annotations

import os
import sys

from rock_core.serving import PipeStream, open_pipe_stream


class StdioStream(PipeStream):
    """Reads frames from stdin, writes frames to the original stdout."""

    @classmethod
    async def open(cls) -> PipeStream:
        """Take over fds 0 and 1 (1 then points at stderr) as the protocol's stream."""
        out_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return await open_pipe_stream(
            os.fdopen(0, "rb", buffering=0), os.fdopen(out_fd, "wb", buffering=0)
        )

    def __repr__(self) -> str:
        return "StdioStream()"
