"""Whether a failed TCP connect was refused: nothing listens there (a `NotFound`, not a fault).

Rules:
- anyio tries each address of a name and groups the attempts' errors, and the kit chains its
  own errors onto the OS's: the answer looks through both.
"""

from __future__ import annotations


def connection_refused(exc: BaseException | None) -> bool:
    """True if `exc`, an error it groups, or one it was raised from is `ConnectionRefusedError`."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return any(connection_refused(inner) for inner in exc.exceptions)
        exc = exc.__cause__
    return False


__all__ = ["connection_refused"]
