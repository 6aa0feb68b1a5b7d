"""`expect` patterns: refused before a costly compile, compiled off the loop with a bound, and
searched incrementally with the results a search of all the output would give."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
import regex  # type: ignore[import-untyped]

from rock_agent import _expect
from rock_agent._expect import Search, check_size, compile_one, compile_patterns
from rock_core._errors import BadRequest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the agent runs on asyncio only


DEEP = "(" * 2000 + "a" + ")" * 2000  # under the 4096-character limit of a pattern


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("a{1000000000}", "a repeat count of 1000000000 is above the limit of 10000"),
        ("x{3,20000}", "a repeat count of 20000 is above the limit of 10000"),
        ("b{,10001}", "a repeat count of 10001 is above the limit of 10000"),
        ("(a{1000}){1000}", "its counted repeats expand to more than 100000 items"),
        ("(?:[ab]{400}c){300}", "its counted repeats expand to more than 100000 items"),
        ("a{9000}" * 12, "its counted repeats expand to more than 100000 items"),
        (DEEP, "its groups nest more than 100 deep"),
    ],
)
def test_costly_patterns_are_refused_before_compiling(pattern: str, says: str) -> None:
    with pytest.raises(BadRequest, match=r"^bad expect pattern ") as refused:
        check_size(pattern)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "pattern",
    [
        r">>> ",
        r"\d{4}-\d{2}",
        r"a{10000}",
        r"(ab){5000}",
        r"\{99999999\}",  # braces, escaped: no repeat
        r"[{]99999999}",  # a brace in a class: no repeat
        r"\p{L}+",
        r"x{}y",
        "(" * 100 + "a" + ")" * 100,
    ],
)
def test_ordinary_patterns_pass_the_size_check(pattern: str) -> None:
    check_size(pattern)
    compile_one(pattern)


def test_compile_failures_are_bad_requests_naming_the_pattern() -> None:
    with pytest.raises(BadRequest, match=r"^bad expect pattern '\(\(\(\(\(.*\.\.\.: it nests too"):
        compile_one(DEEP)  # past the size check: the engine's own recursion
    with pytest.raises(BadRequest, match=r"^bad expect pattern 'a\(': missing \)"):
        compile_one("a(")


async def test_compile_patterns_refuses_before_any_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    monkeypatch.setattr(_expect, "compile_one", compiled.append)
    with pytest.raises(BadRequest, match=r"'a\{1000000000\}': a repeat count of 1000000000"):
        await compile_patterns(["ok", "a{1000000000}"])
    with pytest.raises(BadRequest, match="its groups nest more than 100 deep"):
        await compile_patterns([DEEP])
    with pytest.raises(BadRequest, match=r"^expect needs at least one pattern$"):
        await compile_patterns([])
    assert compiled == []


async def test_a_compile_past_its_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(pattern: str) -> Any:
        time.sleep(1.0)
        return regex.compile(pattern)

    monkeypatch.setattr(_expect, "COMPILE_BOUND", 0.1)
    monkeypatch.setattr(_expect, "compile_one", slow)
    with pytest.raises(
        BadRequest, match=r"^bad expect pattern 'x': compiling it took more than 0.1 s: simplify"
    ):
        await compile_patterns(["x"])


async def test_a_catastrophic_search_is_refused_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_expect, "MATCH_BOUND", 0.2)
    search = await Search.open(["NEVER", r"(a|a)+$"])
    with pytest.raises(BadRequest, match=r"^expect pattern '\(a\|a\)\+\$' took more than 0.2 s"):
        await search.search(bytearray(b"a" * 40 + b"!"), 41, final=False)


def reference(patterns: list[bytes], data: bytes, end: int) -> tuple[int, int, int] | None:
    """The earliest match of all patterns over all of `data[:end]`, ties to the first."""
    best = None
    for index, pattern in enumerate(patterns):
        m = regex.search(pattern, data[:end])
        if m and (best is None or m.start() < best[1]):
            best = (index, m.start(), m.end())
    return best


PATTERNS = [
    rb"ab",
    rb"a.*!|b",
    rb"a\d+!|c",
    rb"foo$",
    rb"^foo",
    rb"(a|b)+c",
    rb"\bab\b",
    rb"(?<=x)a",
    rb"a{3}",
    rb"[ab]*c",
    rb"x(?=a)",
    rb"(?:ab)+!",
    rb"b$|a",
    rb"o\no",
]


async def test_incremental_search_finds_what_a_full_search_finds() -> None:
    rng = random.Random(7)
    for trial in range(300):
        chosen = rng.sample(PATTERNS, rng.randint(1, 3))
        search = Search([regex.compile(p) for p in chosen])
        text = bytes(rng.choice(b"abcx!1fo \n") for _ in range(rng.randint(0, 40)))
        buffer = bytearray()
        got = expected = None
        for at in range(0, len(text) + 1, rng.randint(1, 6)):
            buffer[:] = text[:at]
            expected = reference(chosen, text, at)
            got = await search.search(buffer, at, final=False)
            if expected is not None:
                break
        assert got == expected, (trial, chosen, text)
        # At the end of the command: a last search of everything, `$` at the end line.
        ended = await Search([regex.compile(p) for p in chosen]).search(
            bytearray(text + b"__rock_marker_0\n"), len(text), final=True
        )
        assert ended == reference(chosen, text, len(text)), (trial, chosen, text)


async def test_each_pass_searches_new_output_and_an_overlap() -> None:
    search = Search([regex.compile(rb"NEVER"), regex.compile(rb"(?<=y\n)z")])
    buffer = bytearray()
    for _ in range(200):
        buffer += b"y\n" * 5000
        assert await search.search(buffer, len(buffer), final=False) is None
        # The next pass starts at most OVERLAP bytes before the end of this one.
        assert min(search.starts) >= len(buffer) - len(b"NEVER")
    buffer += b"z"
    assert await search.search(buffer, len(buffer), final=False) == (1, 2_000_000, 2_000_001)


async def test_dropped_output_moves_the_starts() -> None:
    search = Search([regex.compile(rb"a\d+!")])
    buffer = bytearray(b"x" * 100 + b"a12")
    assert await search.search(buffer, len(buffer), final=False) is None
    assert search.starts == [100]  # a partial match: a match may still start there
    del buffer[:50]
    search.dropped(50)
    buffer += b"3!"
    assert await search.search(buffer, len(buffer), final=False) == (0, 50, 55)
