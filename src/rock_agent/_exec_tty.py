"""The terminal of a process run through the engine: its size, set at start and on resize.

Rules:
- The engine makes an exec's pseudo-terminal when it starts the process (``Tty``); its size
  is set by a resize call after that. The engine may refuse a resize in the moment between
  start and run, so the first one is tried a few times (`FIRST_RESIZE_TRIES`), as docker's
  own client does. It never fails the start: a process that could not start, or ended
  meanwhile, says so through its stream.
- An engine before API 1.42 has no size at exec create, so a program that reads its size at
  once (``stty size``) could see 0 x 0: a terminal's program starts behind `WAIT_FOR_SIZE`,
  a /bin/sh line that waits (briefly, bounded) until the terminal has a size, then execs
  it. An image without `stty` skips the wait.
- A resize of a process that has no terminal is a `BadRequest`; every engine call is bounded
  and mapped by `_engine`.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from rock_core import BadRequest, RockError

from ._engine import engine_call

log = logging.getLogger("rock_agent")

#: Wait up to about 2 s until the terminal has a size (`stty size` says "0 0", or fails, before).
WAIT_FOR_SIZE = [
    "/bin/sh",
    "-c",
    "if command -v stty >/dev/null 2>&1; then n=0; "
    'while s=$(stty size 2>/dev/null); [ -z "$s" ] || [ "$s" = "0 0" ]; do '
    '[ $n -ge 200 ] && break; n=$((n + 1)); sleep 0.01 2>/dev/null || break; done; fi; exec "$@"',
    "sh",
]

FIRST_RESIZE_TRIES = 5
FIRST_RESIZE_PAUSE = 0.05  # seconds between tries of the first resize


async def resize_exec(raw: Any, sandbox_id: str, rows: int, cols: int, bound: float) -> None:
    """Set the terminal size of exec `raw` (`BadRequest` for sizes out of range)."""
    if not (1 <= rows <= 0xFFFF and 1 <= cols <= 0xFFFF):
        raise BadRequest(f"a terminal of {rows} x {cols} is out of range (1 to 65535 each)")
    with engine_call(f"resizing a terminal in sandbox {sandbox_id}", bound):
        await raw.resize(h=rows, w=cols)


async def first_resize(raw: Any, sandbox_id: str, rows: int, cols: int, bound: float) -> None:
    """The size of a terminal just started: tried a few times (see the module's rules)."""
    for attempt in range(FIRST_RESIZE_TRIES):
        try:
            await resize_exec(raw, sandbox_id, rows, cols, bound)
            return
        except RockError as exc:
            if attempt == FIRST_RESIZE_TRIES - 1 or isinstance(exc, BadRequest):
                log.info("a new terminal in sandbox %s kept its size: %s", sandbox_id, exc)
                return
            await anyio.sleep(FIRST_RESIZE_PAUSE)


def sized_argv(argv: list[str]) -> list[str]:
    """`argv` started once its terminal has a size (see `WAIT_FOR_SIZE`)."""
    return [*WAIT_FOR_SIZE, *argv]


__all__ = ["FIRST_RESIZE_TRIES", "WAIT_FOR_SIZE", "first_resize", "resize_exec", "sized_argv"]
