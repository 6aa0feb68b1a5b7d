"""`expect` patterns: compiled once, matched off the event loop, each match bounded in time.

Rules:
- Patterns use the `regex` package in its `re`-compatible mode (the syntax of Python's `re`).
  A match runs in a worker thread with the GIL released (`concurrent=True`), so a slow pattern
  never stalls the agent's other clients, and stops after `MATCH_BOUND` seconds: a pattern
  that backtracks catastrophically (`(a+)+$`) is a `BadRequest` naming it, not a stall.
- The earliest match over all patterns wins; ties go to the first pattern.
"""

from __future__ import annotations

from typing import Any

import anyio
import regex  # type: ignore[import-untyped]

from rock_core._errors import BadRequest

MATCH_BOUND = 2.0  # seconds one search of one pattern may take


def compile_patterns(patterns: list[str]) -> list[Any]:
    """Compiled patterns, or `BadRequest` naming the one that is not a valid expression."""
    if not patterns:
        raise BadRequest("expect needs at least one pattern")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(regex.compile(pattern.encode("utf-8", "surrogateescape")))
        except regex.error as exc:
            raise BadRequest(f"bad expect pattern {pattern!r}: {exc}") from exc
    return compiled


def _earliest(compiled: list[Any], data: bytes) -> tuple[int, int, int] | None:
    best: tuple[int, int, int] | None = None
    for index, pattern in enumerate(compiled):
        try:
            m = pattern.search(data, concurrent=True, timeout=MATCH_BOUND)
        except TimeoutError as exc:
            raise BadRequest(
                f"expect pattern {pattern.pattern.decode(errors='replace')!r} took more than "
                f"{MATCH_BOUND:g} s to search {len(data)} bytes of output (it backtracks "
                "catastrophically): simplify it"
            ) from exc
        if m and (best is None or m.start() < best[1]):
            best = (index, m.start(), m.end())
    return best


async def search(compiled: list[Any], data: bytes) -> tuple[int, int, int] | None:
    """(pattern index, start, end) of the earliest match in `data`, or None."""
    if not data:
        return _earliest(compiled, data)
    return await anyio.to_thread.run_sync(_earliest, compiled, data, abandon_on_cancel=True)


__all__ = ["MATCH_BOUND", "compile_patterns", "search"]
