"""What an agent answers for a request whose handler failed with an exception not of ours.

Rules:
- A foreign exception (a bug, a library's error) fails that request only: it is answered with
  an `InternalError` naming it, and logged with its traceback.
- So is a cancellation that nobody asked for: a library that cancels a task of its own and lets
  the `CancelledError` out (asyncio). In a task group it would cancel the whole group, and so
  silently end the connection with every request on it. A real cancellation (the request's
  connection or the agent is being cancelled: no time is left) goes on as one.
- Anything else that is not an `Exception` (`KeyboardInterrupt`, `SystemExit`) goes on too.
"""

from __future__ import annotations

import logging
import math

import anyio

from ._errors import InternalError

log = logging.getLogger("rock_core.endpoint")


def answerable(exc: BaseException) -> bool:
    """True if `exc`, raised by a request's handler, fails only that request (see the rules)."""
    if isinstance(exc, Exception):
        return True
    cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
    return cancelled and anyio.current_effective_deadline() != -math.inf


def internal_error(operation: str, exc: BaseException) -> InternalError:
    """The error a request of `operation` is answered with; `exc` is logged with its traceback."""
    log.error("internal error handling %s", operation, exc_info=exc)
    return InternalError(f"internal agent error in {operation}: {type(exc).__name__}: {exc}")


__all__ = ["answerable", "internal_error"]
