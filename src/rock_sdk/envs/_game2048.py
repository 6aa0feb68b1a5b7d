"""2048: slide and merge tiles to reach a target tile. Moves: ``\\boxed{up}`` and its siblings."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ._direction_game import DirectionGame
from ._game import MoveResult, Outcome, require
from ._grid import DIRECTION_HINT, DIRECTIONS

__all__ = ["Game2048Config", "Game2048Env", "slide_row"]

# GEM's random table: (target tile, turns).
_RANDOM_TABLE = ((16, 20), (32, 30), (64, 50))


@dataclass(frozen=True, slots=True)
class Game2048Config:
    """Tile to reach, board side, and the turn limit."""

    target_tile: int
    board_size: int
    max_turns: int


class Game2048Env(DirectionGame[Game2048Config]):
    """GEM's 2048. After each move a 2 (90%) or a 4 (10%) appears on a random empty cell.

    Illegal: a move that changes nothing. A board with no move left loses; like a
    truncation, that earns the partial credit. Partial credit: how far the largest tile has
    come from the start towards the target on a log scale,
    ``(log2(max) - log2(start max)) / (log2(target) - log2(start max))``.
    """

    title = "2048"

    def __init__(
        self,
        target_tile: int = 2048,
        max_turns: int = 1000,
        board_size: int = 4,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(
            target_tile >= 8 and target_tile.bit_count() == 1,
            f"2048: target_tile must be a power of two of at least 8, got {target_tile}",
        )
        require(board_size >= 2, f"2048: board_size must be at least 2, got {board_size}")
        require(max_turns >= 1, f"2048: max_turns must be at least 1, got {max_turns}")
        config = Game2048Config(target_tile, board_size, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._tile_rng = random.Random(0)
        self._board: list[list[int]] = []
        self._start_max = 2

    def _random_config(self, rng: random.Random) -> Game2048Config:
        target, turns = rng.choice(_RANDOM_TABLE)
        return Game2048Config(target, self._fixed_config.board_size, turns)

    def _new_game(self, rng: random.Random) -> None:
        size = self.config.board_size
        self._tile_rng = rng
        self._board = [[0] * size for _ in range(size)]
        self._spawn()
        self._spawn()
        self._start_max = self._max_tile()

    @property
    def board(self) -> list[list[int]]:
        """The board, row by row; 0 is an empty cell."""
        return [list(row) for row in self._board]

    def _max_tile(self) -> int:
        return max(max(row) for row in self._board)

    def _spawn(self) -> None:
        empty = [
            (row, col)
            for row, cells in enumerate(self._board)
            for col, value in enumerate(cells)
            if not value
        ]
        if empty:
            row, col = self._tile_rng.choice(empty)
            self._board[row][col] = 2 if self._tile_rng.random() < 0.9 else 4

    def _instructions(self) -> str:
        return (
            "You are playing 2048.\n"
            f"Your goal is to reach the {self.config.target_tile} tile by sliding and merging "
            f"tiles. You have {self.config.max_turns} turns maximum.\n\n"
            "Rules:\n"
            "- When two tiles with the same number touch, they merge into one tile with double "
            "the value.\n"
            "- After each move, a new tile (2 or 4) appears in a random empty spot.\n"
            "- You can move tiles in four directions: 'up', 'down', 'left', 'right'.\n\n"
            f"To submit your move, type the direction inside \\boxed{{}}: {DIRECTION_HINT}."
        )

    def _render_state(self) -> str:
        lines = [
            " ".join(f"{value:4d}" if value else "   ." for value in row) for row in self._board
        ]
        return "Current board:\n" + "\n".join(lines)

    def _play(self, move: str) -> MoveResult:
        moved = _slide_board(self._board, move)
        if moved == self._board:
            return MoveResult(Outcome.ILLEGAL, f"moving {move} does not change the board.")
        self._board = moved
        reached = self._max_tile() >= self.config.target_tile
        self._spawn()
        if reached:
            return MoveResult(
                Outcome.WON, f"you reached the {self.config.target_tile} tile. Congratulations!"
            )
        if all(_slide_board(self._board, other) == self._board for other in DIRECTIONS):
            return MoveResult(Outcome.LOST, "no move is left. Game over!")
        return MoveResult(Outcome.PLAYED, f"you moved {move}.")

    def _partial_credit(self) -> float:
        start = math.log2(self._start_max)
        span = math.log2(self.config.target_tile) - start
        progress = (math.log2(self._max_tile()) - start) / span
        return max(progress, 0.0)

    def _loss_reward(self) -> float:
        return self._partial_credit()


def slide_row(row: list[int]) -> list[int]:
    """Slide one row to the left, merging each equal pair once, as 2048 does."""
    tiles = [value for value in row if value]
    merged: list[int] = []
    index = 0
    while index < len(tiles):
        if index + 1 < len(tiles) and tiles[index] == tiles[index + 1]:
            merged.append(tiles[index] * 2)
            index += 2
        else:
            merged.append(tiles[index])
            index += 1
    return merged + [0] * (len(row) - len(merged))


def _slide_board(board: list[list[int]], move: str) -> list[list[int]]:
    """The board after sliding every line in `move`'s direction (a new board)."""
    if move in ("left", "right"):
        lines = [list(row) for row in board]
    else:
        lines = [list(column) for column in zip(*board, strict=True)]
    backwards = move in ("right", "down")
    slid = [slide_row(line[::-1])[::-1] if backwards else slide_row(line) for line in lines]
    if move in ("left", "right"):
        return slid
    return [list(row) for row in zip(*slid, strict=True)]
