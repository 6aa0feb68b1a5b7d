"""`DirectionGame`: the moves of the grid games played with up / down / left / right.

Rules:
- A move is one of `_grid.DIRECTIONS`, written in a box in any case; how it is hinted, read
  and drawn at random is decided here once for every such game (2048, Fifteen Puzzle,
  Sokoban). Each game still supplies its rules, board and instructions.
"""

from __future__ import annotations

import random

from ._game import ConfigT, TextGame
from ._grid import DIRECTION_HINT, DIRECTIONS, parse_direction


class DirectionGame(TextGame[ConfigT, str]):
    """A `TextGame` whose moves are the four directions."""

    def _move_hint(self) -> str:
        return f"Enter your move: {DIRECTION_HINT}."

    def _parse_move(self, content: str) -> str | None:
        return parse_direction(content)

    def _random_move(self, rng: random.Random) -> str:
        return rng.choice(list(DIRECTIONS))


__all__ = ["DirectionGame"]
