"""The Fifteen Puzzle: slide tiles into order. Moves: ``\\boxed{up}`` and its three siblings."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._direction_game import DirectionGame
from ._game import MoveResult, Outcome, require
from ._grid import DIRECTION_HINT, DIRECTIONS, OPPOSITE

__all__ = ["FifteenPuzzleConfig", "FifteenPuzzleEnv"]

# GEM's random table: (rows, turns).
_RANDOM_TABLE = ((2, 10), (3, 20), (4, 50))


@dataclass(frozen=True, slots=True)
class FifteenPuzzleConfig:
    """Side of the square board, random slides used to shuffle it, and the turn limit."""

    num_rows: int
    scramble_moves: int
    max_turns: int


class FifteenPuzzleEnv(DirectionGame[FifteenPuzzleConfig]):
    """GEM's Fifteen Puzzle (any square size); the blank is ``__``.

    A direction slides the tile next to the blank into it: ``up`` moves the tile below the
    blank up, and so on. The board is shuffled by random slides from the goal (between half
    of ``scramble_moves`` and all of them, never undoing the previous slide), so it is always
    solvable and never starts solved. Illegal: a slide with no tile on that side. Partial
    credit on truncation: the fraction of numbered tiles in their goal cells.
    """

    title = "Fifteen Puzzle"

    def __init__(
        self,
        num_rows: int = 2,
        max_turns: int = 20,
        scramble_moves: int = 100,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(num_rows >= 2, f"Fifteen Puzzle: num_rows must be at least 2, got {num_rows}")
        require(
            scramble_moves >= 2,
            f"Fifteen Puzzle: scramble_moves must be at least 2, got {scramble_moves}",
        )
        require(max_turns >= 1, f"Fifteen Puzzle: max_turns must be at least 1, got {max_turns}")
        config = FifteenPuzzleConfig(num_rows, scramble_moves, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._tiles: list[int] = []  # row-major, 0 is the blank
        self._goal: list[int] = []

    def _random_config(self, rng: random.Random) -> FifteenPuzzleConfig:
        rows, turns = rng.choice(_RANDOM_TABLE)
        return FifteenPuzzleConfig(rows, self._fixed_config.scramble_moves, turns)

    def _new_game(self, rng: random.Random) -> None:
        size = self.config.num_rows
        goal = self._goal = [*range(1, size * size), 0]
        while True:
            self._tiles = list(goal)
            previous = ""
            count = rng.randint(self.config.scramble_moves // 2, self.config.scramble_moves)
            for _ in range(count):
                options = [
                    move
                    for move in DIRECTIONS
                    if move != OPPOSITE.get(previous) and self._source(move, size) is not None
                ]
                previous = rng.choice(options)
                self._slide(previous)
            if self._tiles != goal:
                return

    @property
    def tiles(self) -> list[list[int]]:
        """The board, row by row; 0 is the blank."""
        size = self.config.num_rows
        return [self._tiles[row * size : (row + 1) * size] for row in range(size)]

    def _source(self, move: str, size: int) -> int | None:
        """The cell of the tile that `move` slides into the blank, if there is one."""
        blank = self._tiles.index(0)
        row, col = divmod(blank, size)
        dr, dc = DIRECTIONS[move]
        # The tile comes from the side opposite to the direction it moves in.
        row, col = row - dr, col - dc
        if 0 <= row < size and 0 <= col < size:
            return row * size + col
        return None

    def _slide(self, move: str) -> bool:
        source = self._source(move, self.config.num_rows)
        if source is None:
            return False
        blank = self._tiles.index(0)
        self._tiles[blank], self._tiles[source] = self._tiles[source], 0
        return True

    def _instructions(self) -> str:
        largest = self.config.num_rows**2 - 1
        return (
            f"You are playing the {largest}-Puzzle game.\n"
            f"You have to arrange the numbered tiles in ascending order from 1 to {largest}, "
            "with the empty space in the bottom-right corner.\n"
            "To make a move, slide a tile into the empty space (shown as __):\n"
            "- 'up': move the tile below the empty space up.\n"
            "- 'down': move the tile above the empty space down.\n"
            "- 'left': move the tile to the right of the empty space left.\n"
            "- 'right': move the tile to the left of the empty space right.\n"
            f"Type the direction inside \\boxed{{}}: {DIRECTION_HINT}.\n"
            f"You have {self.config.max_turns} turns. Use logic and planning to solve the puzzle."
        )

    def _render_state(self) -> str:
        size = self.config.num_rows
        cells = [f"{tile:2}" if tile else "__" for tile in self._tiles]
        lines = [" ".join(cells[row * size : (row + 1) * size]) for row in range(size)]
        return "Here is the current board layout:\n" + "\n".join(lines)

    def _play(self, move: str) -> MoveResult:
        if not self._slide(move):
            return MoveResult(Outcome.ILLEGAL, f"there is no tile to slide {move}.")
        if self._tiles == self._goal:
            return MoveResult(Outcome.WON, "you solved the puzzle. Congratulations!")
        return MoveResult(Outcome.PLAYED, f"you slid a tile {move}.")

    def _partial_credit(self) -> float:
        placed = sum(t == want for t, want in zip(self._tiles, self._goal, strict=True) if want)
        return placed / (len(self._goal) - 1)
