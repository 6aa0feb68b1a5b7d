"""The word list shipped with the package (common English words of 3 to 7 letters)."""

from __future__ import annotations

import functools
from importlib import resources

from rock_core import BadRequest

__all__ = ["WORD_LENGTHS", "words_of_length"]

#: The word lengths the shipped list covers.
WORD_LENGTHS = range(3, 8)


@functools.cache
def _all_words() -> tuple[str, ...]:
    text = resources.files("rock_sdk.envs").joinpath("data", "words.txt").read_text("ascii")
    return tuple(line.strip().upper() for line in text.splitlines() if line.strip())


@functools.cache
def words_of_length(length: int) -> tuple[str, ...]:
    """Every shipped word with `length` letters, upper-case and sorted."""
    if length not in WORD_LENGTHS:
        raise BadRequest(
            f"no words of length {length} ship with the package; "
            f"lengths {WORD_LENGTHS.start}..{WORD_LENGTHS.stop - 1} do"
        )
    return tuple(word for word in _all_words() if len(word) == length)
