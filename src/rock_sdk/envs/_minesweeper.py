"""Minesweeper: reveal every safe cell. Moves: ``\\boxed{reveal 3 2}``, ``\\boxed{flag 0 4}``."""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require

__all__ = ["MinesweeperConfig", "MinesweeperEnv"]

_MOVE = re.compile(r"([A-Za-z]+)\s+(\d+)\s+(\d+)")
_NEIGHBOURS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))


@dataclass(frozen=True, slots=True)
class MinesweeperConfig:
    """Board size, number of mines and turn limit."""

    rows: int
    cols: int
    num_mines: int
    max_turns: int


class MinesweeperEnv(TextGame[MinesweeperConfig, tuple[str, int, int]]):
    """GEM's Minesweeper; rows and columns count from 0. The first reveal never hits a mine.

    Winning means revealing every safe cell (flags are optional notes). Revealing a mine
    loses (reward 0.0). Illegal: a cell off the board, revealing a revealed or flagged cell,
    flagging a revealed cell, or a verb other than ``reveal`` / ``flag``. Partial credit on
    truncation: the fraction of safe cells revealed.
    """

    title = "Minesweeper"

    def __init__(
        self,
        rows: int = 8,
        cols: int = 8,
        num_mines: int = 10,
        max_turns: int = 20,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(
            rows >= 3 and cols >= 3,
            f"Minesweeper: the board must be at least 3x3, got {rows}x{cols}",
        )
        require(
            1 <= num_mines <= rows * cols - 9,
            f"Minesweeper: num_mines must be between 1 and {rows * cols - 9} on a "
            f"{rows}x{cols} board, got {num_mines}",
        )
        require(max_turns >= 1, f"Minesweeper: max_turns must be at least 1, got {max_turns}")
        config = MinesweeperConfig(rows, cols, num_mines, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._board_rng = random.Random(0)
        self._mines: set[tuple[int, int]] = set()
        self._counts: dict[tuple[int, int], int] = {}
        self._revealed: set[tuple[int, int]] = set()
        self._flags: set[tuple[int, int]] = set()

    def _random_config(self, rng: random.Random) -> MinesweeperConfig:
        # GEM's random variant: a square board of 5..8 with a fifth of it mined.
        size = rng.randint(5, 8)
        return MinesweeperConfig(size, size, size * size // 5, size * size)

    def _new_game(self, rng: random.Random) -> None:
        # Mines are laid at the first reveal (so it is safe), from this episode's stream.
        self._board_rng = random.Random(rng.getrandbits(64))
        self._mines = set()
        self._counts = {}
        self._revealed = set()
        self._flags = set()

    def _instructions(self) -> str:
        config = self.config
        return (
            "You are playing the Minesweeper game.\n"
            f"The board has {config.rows} rows and {config.cols} columns (numbered from 0) and "
            f"hides {config.num_mines} mines. Reveal every cell that does not contain a mine "
            f"within {config.max_turns} turns.\n"
            "Commands:\n"
            "- \\boxed{reveal ROW COL} reveals a cell, e.g. \\boxed{reveal 2 3}.\n"
            "- \\boxed{flag ROW COL} places or removes a flag on a suspected mine, "
            "e.g. \\boxed{flag 0 1}.\n"
            "Unrevealed cells are shown as '.', flags as 'F', and revealed cells show how many "
            "of their eight neighbours hold a mine. Your first reveal is always safe.\n"
            "Do not choose revealed or flagged cells. Use logic and deduction to avoid the mines!"
        )

    def _render_state(self) -> str:
        config = self.config
        header = "   " + " ".join(f"{col:>2}" for col in range(config.cols))
        lines = [header]
        for row in range(config.rows):
            # Every symbol is one character, right-aligned under a two-character header.
            cells = "  ".join([self._symbol((row, col)) for col in range(config.cols)])
            lines.append(f"{row:>2}  {cells}")
        return "Here is the current board layout:\n" + "\n".join(lines)

    def _symbol(self, cell: tuple[int, int]) -> str:
        if cell in self._revealed:
            return "*" if cell in self._mines else str(self._counts[cell])
        return "F" if cell in self._flags else "."

    def _move_hint(self) -> str:
        return "Enter your move: \\boxed{reveal ROW COL} or \\boxed{flag ROW COL}."

    def _parse_move(self, content: str) -> tuple[str, int, int] | None:
        match = _MOVE.fullmatch(content.strip())
        if match is None:
            return None
        return match.group(1).lower(), int(match.group(2)), int(match.group(3))

    def _play(self, move: tuple[str, int, int]) -> MoveResult:
        verb, row, col = move
        cell = (row, col)
        config = self.config
        if verb not in ("reveal", "flag"):
            return MoveResult(
                Outcome.ILLEGAL, f"'{verb}' is not a command; use 'reveal' or 'flag'."
            )
        if not (0 <= row < config.rows and 0 <= col < config.cols):
            return MoveResult(Outcome.ILLEGAL, f"cell ({row}, {col}) is outside the board.")
        if cell in self._revealed:
            return MoveResult(Outcome.ILLEGAL, f"cell ({row}, {col}) is already revealed.")
        if verb == "flag":
            self._flags ^= {cell}
            action = "placed a flag on" if cell in self._flags else "removed the flag from"
            return MoveResult(Outcome.PLAYED, f"you {action} cell ({row}, {col}).")
        if cell in self._flags:
            return MoveResult(
                Outcome.ILLEGAL, f"cell ({row}, {col}) is flagged; remove the flag to reveal it."
            )
        if not self._mines:
            self._lay_mines(cell)
        if cell in self._mines:
            self._revealed.add(cell)
            return MoveResult(Outcome.LOST, f"you hit a mine at ({row}, {col}). Game over!")
        self._flood(cell)
        if len(self._revealed) == config.rows * config.cols - config.num_mines:
            return MoveResult(Outcome.WON, "you cleared the board. Congratulations!")
        return MoveResult(Outcome.PLAYED, f"you revealed cell ({row}, {col}).")

    def _lay_mines(self, safe: tuple[int, int]) -> None:
        """Mine cells away from the first reveal's 3x3 neighbourhood."""
        config = self.config
        allowed = [
            (row, col)
            for row in range(config.rows)
            for col in range(config.cols)
            if abs(row - safe[0]) > 1 or abs(col - safe[1]) > 1
        ]
        self._mines = set(self._board_rng.sample(allowed, config.num_mines))
        self._counts = {
            (row, col): sum((row + dr, col + dc) in self._mines for dr, dc in _NEIGHBOURS)
            for row in range(config.rows)
            for col in range(config.cols)
        }

    def _flood(self, start: tuple[int, int]) -> None:
        """Reveal `start` and, through cells with no mine around, everything they touch."""
        config = self.config
        self._revealed.add(start)
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if self._counts[cell]:
                continue
            for dr, dc in _NEIGHBOURS:
                nxt = (cell[0] + dr, cell[1] + dc)
                if (
                    0 <= nxt[0] < config.rows
                    and 0 <= nxt[1] < config.cols
                    and nxt not in self._revealed
                    and nxt not in self._flags
                ):
                    self._revealed.add(nxt)
                    queue.append(nxt)

    @property
    def mines(self) -> frozenset[tuple[int, int]]:
        """Where the mines are (empty until the first reveal lays them)."""
        return frozenset(self._mines)

    def _partial_credit(self) -> float:
        config = self.config
        safe_revealed = len(self._revealed - self._mines)
        return safe_revealed / (config.rows * config.cols - config.num_mines)

    def _random_move(self, rng: random.Random) -> str:
        verb = "flag" if rng.random() < 0.1 else "reveal"
        return f"{verb} {rng.randrange(self.config.rows)} {rng.randrange(self.config.cols)}"
