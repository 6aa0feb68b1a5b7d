"""`expect` patterns: checked, compiled off the event loop, matched incrementally with a bound.

Rules:
- Patterns use the `regex` package in its `re`-compatible mode (the syntax of Python's `re`).
- Compiling is bounded. The `regex` engine expands counted repeats when it compiles, so before
  any compile a pattern is refused (`BadRequest` naming it and the limit) when a repeat count
  is above `MAX_REPEAT`, when its repeats, multiplied out through nested groups, come to more
  than `MAX_EXPANSION` items, or when its groups nest deeper than `MAX_NESTING`: a runaway
  compile in a thread could not be stopped, and its memory could not be given back. The
  compile itself runs in a worker thread, all of an `expect`'s patterns in at most
  `COMPILE_BOUND` seconds; a compile that fails in any way (a syntax error, too deep a
  recursion, no memory, too large a number) or takes longer is a `BadRequest` naming the
  pattern.
- Matching runs in a worker thread with the GIL released (`concurrent=True`), so a slow pattern
  never stalls the agent's other clients. One pass over all patterns takes at most
  `MATCH_BOUND` seconds: a pattern that backtracks catastrophically (`(a+)+$`) is a
  `BadRequest` naming it, not a stall.
- A search is incremental. Each pattern remembers the earliest place a match could still start
  (a partial match of the `regex` engine, or the end of what was searched); a pass shows the
  patterns only the output from there on, plus `OVERLAP` bytes before it for lookbehinds and
  `\\b`. What a pattern can match is what a search of all the output would match.
- An `expect` keeps the last `WINDOW` bytes of output for its patterns; the session hands
  older bytes to the command's output (`_shell.expect`), so a pattern never matches across
  more than that, and a flood costs the agent one window.
- The earliest match over all patterns wins; ties go to the first pattern.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import regex  # type: ignore[import-untyped]

from rock_core import BadRequest

MATCH_BOUND = 2.0  # seconds one pass of all patterns over the output may take
COMPILE_BOUND = 2.0  # seconds compiling all patterns of one `expect` may take
MAX_REPEAT = 10_000  # largest count of a counted repeat (`{n}`, `{n,m}`)
MAX_EXPANSION = 100_000  # items a pattern's counted repeats may expand to, multiplied out
MAX_NESTING = 100  # deepest nesting of groups
WINDOW = 1 << 20  # bytes of output an `expect` keeps for its patterns (older ones are output)
OVERLAP = 1 << 12  # bytes before a pattern's earliest possible start that a pass shows it

_REPEAT = regex.compile(r"\{(\d*)(?:,(\d*))?\}")


def _shown(pattern: str) -> str:
    text = repr(pattern)
    return text if len(text) <= 200 else text[:200] + "..."


def _refuse(pattern: str, why: str) -> BadRequest:
    return BadRequest(f"bad expect pattern {_shown(pattern)}: {why}")


def check_size(pattern: str) -> None:
    """`BadRequest` if compiling `pattern` could take more time or memory than it is worth.

    A rough, linear reading of the pattern: every character or escape is one item, a class
    `[...]` one item, a group the sum of its items, a counted repeat multiplies the item before
    it by its largest count. It only ever overestimates what the engine expands.
    """
    stack: list[int] = [0]  # items of each open group, innermost last
    last = 0  # items of the atom a repeat would apply to
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            last, i = 1, i + 2
        elif char == "[":
            end = i + 1
            end += 1 if pattern[end : end + 1] == "^" else 0
            end += 1 if pattern[end : end + 1] == "]" else 0
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            last, i = 1, end + 1
        elif char == "(":
            stack.append(0)
            if len(stack) - 1 > MAX_NESTING:
                raise _refuse(pattern, f"its groups nest more than {MAX_NESTING} deep")
            last, i = 0, i + 1
            continue
        elif char == ")" and len(stack) > 1:
            last, i = max(1, stack.pop()), i + 1
        elif char == "{" and (repeat := _REPEAT.match(pattern, i)) and repeat.group(0) != "{}":
            counts = [int(n) for n in repeat.groups() if n]
            count = max(counts, default=0)
            if count > MAX_REPEAT:
                raise _refuse(
                    pattern, f"a repeat count of {count} is above the limit of {MAX_REPEAT}"
                )
            stack[-1] += last * max(count, 1) - last
            last, i = last * max(count, 1), repeat.end()
            if stack[-1] > MAX_EXPANSION:
                raise _refuse(pattern, _too_large(stack[-1]))
            continue
        else:
            last, i = (0 if char in "|*+?^$" else 1), i + 1
        stack[-1] += last
        if stack[-1] > MAX_EXPANSION:
            raise _refuse(pattern, _too_large(stack[-1]))
    if sum(stack) > MAX_EXPANSION:
        raise _refuse(pattern, _too_large(sum(stack)))


def _too_large(items: int) -> str:
    return (
        f"its counted repeats expand to more than {MAX_EXPANSION} items (about {items}, "
        "multiplied out through nested groups): use fewer or smaller repeats"
    )


def compile_one(pattern: str) -> Any:
    """The compiled `pattern`, or `BadRequest` naming what is wrong with it (runs anywhere)."""
    try:
        return regex.compile(pattern.encode("utf-8", "surrogateescape"))
    except regex.error as exc:
        raise _refuse(pattern, str(exc)) from exc
    except RecursionError as exc:
        raise _refuse(pattern, "it nests too deeply to compile") from exc
    except MemoryError as exc:
        raise _refuse(pattern, "it is too large to compile") from exc
    except OverflowError as exc:
        raise _refuse(pattern, f"a number in it is too large: {exc}") from exc


async def compile_patterns(patterns: list[str]) -> list[Any]:
    """Compiled patterns, or `BadRequest` naming the first one that cannot be used."""
    if not patterns:
        raise BadRequest("expect needs at least one pattern")
    for pattern in patterns:
        check_size(pattern)
    compiled: list[Any] = []
    with anyio.move_on_after(COMPILE_BOUND):
        for pattern in patterns:
            compiled.append(
                await anyio.to_thread.run_sync(compile_one, pattern, abandon_on_cancel=True)
            )
        return compiled
    late = patterns[len(compiled)]
    raise _refuse(late, f"compiling it took more than {COMPILE_BOUND:g} s: simplify it")


class Search:
    """Incremental search of one `expect` over output that grows at its end."""

    def __init__(self, compiled: list[Any]) -> None:
        self.compiled = compiled
        self.starts = [0] * len(compiled)  # earliest place a match of each could still start

    @classmethod
    async def open(cls, patterns: list[str]) -> Search:
        """A search for `patterns`, compiled off the event loop (`BadRequest` if unusable)."""
        return cls(await compile_patterns(patterns))

    def dropped(self, count: int) -> None:
        """The first `count` bytes of the output were dropped."""
        self.starts = [max(0, start - count) for start in self.starts]

    async def search(
        self, output: bytearray, end: int, *, final: bool
    ) -> tuple[int, int, int] | None:
        """(pattern index, start, end) of the earliest match in `output[:end]`, or None.

        `final` says no more output will follow (the command ended), so nothing is partial;
        its pass searches all of `output[:end]` once more, as bytes past `end` (the start of an
        end line) may have hidden a match that ends at `end`.
        """
        if final:
            self.starts = [0] * len(self.compiled)
        base = max(0, min(self.starts) - OVERLAP)
        data = bytes(output[base:end])
        found, starts = await anyio.to_thread.run_sync(
            _scan, self.compiled, [s - base for s in self.starts], data, final,
            abandon_on_cancel=True,
        )  # fmt: skip
        self.starts = [s + base for s in starts]
        if found is None:
            return None
        index, start, stop = found
        return index, start + base, stop + base


def _scan(
    compiled: list[Any], starts: list[int], data: bytes, final: bool
) -> tuple[tuple[int, int, int] | None, list[int]]:
    """The earliest full match from each pattern's start, and where each could next start."""
    deadline = time.monotonic() + MATCH_BOUND
    best: tuple[int, int, int] | None = None
    after = list(starts)
    for index, (pattern, start) in enumerate(zip(compiled, starts, strict=True)):
        start = min(start, len(data))
        try:
            m = pattern.search(
                data,
                start,
                partial=not final,
                concurrent=True,
                timeout=max(0.001, deadline - time.monotonic()),
            )
        except TimeoutError as exc:
            raise BadRequest(
                f"expect pattern {_shown(pattern.pattern.decode(errors='replace'))} took more "
                f"than {MATCH_BOUND:g} s to search {len(data) - start} bytes of output (it "
                "backtracks catastrophically): simplify it"
            ) from exc
        if m is None:
            after[index] = len(data)
        elif m.partial:
            after[index] = m.start()  # the engine reports a full match before any partial one
        elif best is None or m.start() < best[1]:
            best = (index, m.start(), m.end())
    return best, after


__all__ = [
    "COMPILE_BOUND",
    "MATCH_BOUND",
    "MAX_EXPANSION",
    "MAX_NESTING",
    "MAX_REPEAT",
    "OVERLAP",
    "WINDOW",
    "Search",
    "check_size",
    "compile_one",
    "compile_patterns",
]
