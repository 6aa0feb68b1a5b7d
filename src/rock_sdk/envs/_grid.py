"""Directions shared by the grid games that move with up / down / left / right."""

from __future__ import annotations

__all__ = ["DIRECTIONS", "DIRECTION_HINT", "OPPOSITE", "parse_direction"]

#: Row and column change of each direction; rows grow downwards.
DIRECTIONS: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
}

#: The direction that undoes each direction.
OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left"}

#: How the move hints spell the four actions.
DIRECTION_HINT = "\\boxed{up}, \\boxed{down}, \\boxed{left} or \\boxed{right}"


def parse_direction(text: str) -> str | None:
    """The direction named by `text` (any case), or None if it names none."""
    word = text.strip().lower()
    return word if word in DIRECTIONS else None
