"""A `StartGate` in one process, for tests: a cap on permits held, and a record of every call.

Rules:
- Permits are granted first come, first served, while fewer than `permits` are held.
- `release` of a token not held (never granted, or released already) is a no-op, as the seam
  requires; a token waited for and released is taken out of the line.
- `fail` (an exception) is raised by every later `acquire`, to test a gate that breaks.
"""

from __future__ import annotations

from collections import deque

import anyio

from ._errors import BadRequest


class FakeStartGate:
    """At most `permits` permits held at once; `held`, `peak` and `log` say what happened."""

    def __init__(self, permits: int = 1) -> None:
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise BadRequest(f"permits must be a whole number >= 1, got {permits!r}")
        self.permits = permits
        self.held: set[str] = set()
        self.peak = 0
        self.log: list[tuple[str, str]] = []  # ("acquire" | "granted" | "release", token)
        self.fail: BaseException | None = None
        self._line: deque[str] = deque()
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"FakeStartGate(permits={self.permits})"

    async def acquire(self, token: str) -> None:
        """Wait for a permit for `token` (see the module's rules)."""
        self.log.append(("acquire", token))
        if self.fail is not None:
            raise self.fail
        self._line.append(token)
        try:
            while not (self._line[0] == token and len(self.held) < self.permits):
                changed = self._changed
                await changed.wait()
                if token not in self._line:  # released while it waited: it left the line
                    return
        except BaseException:
            self._leave(token)
            raise
        self._line.popleft()
        self.held.add(token)
        self.peak = max(self.peak, len(self.held))
        self.log.append(("granted", token))
        self._wake()

    async def release(self, token: str) -> None:
        """Give back `token`'s permit, or leave the line; a no-op for any other token."""
        self.log.append(("release", token))
        self.held.discard(token)
        self._leave(token)
        self._wake()

    def _leave(self, token: str) -> None:
        if token in self._line:
            self._line.remove(token)
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


__all__ = ["FakeStartGate"]
