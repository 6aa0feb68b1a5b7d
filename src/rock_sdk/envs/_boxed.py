"""Finding the move in a model's answer: the content of its last complete ``\\boxed{...}``."""

from __future__ import annotations

__all__ = ["last_boxed"]

_MARK = "\\boxed"


def last_boxed(text: str) -> str | None:
    """The stripped content of the last ``\\boxed{...}`` whose braces close, or None.

    Braces nest, so ``\\boxed{\\frac{1}{2}}`` yields ``\\frac{1}{2}``; blanks may separate
    ``\\boxed`` from its brace. An opening that never closes is skipped in favour of the
    complete one before it.
    """
    end = len(text)
    while (start := text.rfind(_MARK, 0, end)) >= 0:
        content = _braced(text, start + len(_MARK))
        if content is not None:
            return content.strip()
        end = start
    return None


def _braced(text: str, index: int) -> str | None:
    """The text inside the brace group opening at `index` (after blanks), if it closes."""
    while index < len(text) and text[index].isspace():
        index += 1
    if not text.startswith("{", index):
        return None
    depth, cursor = 1, index + 1
    while (close := text.find("}", cursor)) >= 0:
        opening = text.find("{", cursor, close)
        if opening >= 0:
            depth, cursor = depth + 1, opening + 1
            continue
        depth, cursor = depth - 1, close + 1
        if depth == 0:
            return text[index + 1 : close]
    return None
