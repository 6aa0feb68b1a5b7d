"""Sudoku: fill the grid. Moves: ``\\boxed{ROW COL NUMBER}``, rows and columns from 1."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require

__all__ = ["SudokuConfig", "SudokuEnv", "count_solutions"]

# GEM's random table: (scale, clues, turns).
_RANDOM_TABLE = ((4, 10, 15), (9, 50, 50))
_MOVE = re.compile(r"(\d+)[\s,]+(\d+)[\s,]+(\d+)")


@dataclass(frozen=True, slots=True)
class SudokuConfig:
    """Grid side (4 or 9), cells given at the start, and the turn limit."""

    scale: int
    clues: int
    max_turns: int


class SudokuEnv(TextGame[SudokuConfig, tuple[int, int, int]]):
    """GEM's Sudoku; every puzzle has exactly one solution.

    Illegal: a cell off the grid, a number out of range, a filled cell, or a number that is
    not the solution's. Partial credit on truncation: the fraction of the initially empty
    cells filled.
    """

    title = "Sudoku"

    def __init__(
        self,
        clues: int = 30,
        max_turns: int = 100,
        scale: int = 9,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(scale in (4, 9), f"Sudoku: scale must be 4 or 9, got {scale}")
        require(
            0 < clues < scale * scale,
            f"Sudoku: clues must be between 1 and {scale * scale - 1}, got {clues}",
        )
        require(max_turns >= 1, f"Sudoku: max_turns must be at least 1, got {max_turns}")
        config = SudokuConfig(scale, clues, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._solution: list[int] = []
        self._board: list[int] = []
        self._empty_at_start = 1

    def _random_config(self, rng: random.Random) -> SudokuConfig:
        return SudokuConfig(*rng.choice(_RANDOM_TABLE))

    def _new_game(self, rng: random.Random) -> None:
        scale = self.config.scale
        self._solution = _full_grid(rng, math.isqrt(scale))
        self._board = _remove_cells(rng, self._solution, math.isqrt(scale), self.config.clues)
        self._empty_at_start = self._board.count(0)

    @property
    def board(self) -> list[list[int]]:
        """The grid now, row by row; 0 marks an empty cell."""
        scale = self.config.scale
        return [self._board[row * scale : (row + 1) * scale] for row in range(scale)]

    @property
    def solution(self) -> list[list[int]]:
        """The unique solution, row by row."""
        scale = self.config.scale
        return [self._solution[row * scale : (row + 1) * scale] for row in range(scale)]

    def _instructions(self) -> str:
        scale = self.config.scale
        box = math.isqrt(scale)
        return (
            f"You are playing {'a simple version of ' if scale == 4 else ''}Sudoku.\n"
            f"Rows and columns are numbered from 1 to {scale}. Empty cells are shown as '.', "
            f"and pre-filled cells contain digits from 1 to {scale}.\n\n"
            f"Fill the empty cells of the {scale}x{scale} grid with digits from 1 to {scale} "
            "so that:\n"
            f"1. Each row contains all digits from 1 to {scale} without repetition.\n"
            f"2. Each column contains all digits from 1 to {scale} without repetition.\n"
            f"3. Each of the {scale} {box}x{box} boxes contains all digits from 1 to {scale} "
            "without repetition.\n\n"
            "Rules:\n"
            "1. Do not overwrite the initial numbers provided in the grid.\n"
            "2. Only fill empty cells represented by '.'.\n"
            "3. Answer in any manner, but put your move in the format \\boxed{row column number}, "
            "e.g. \\boxed{1 2 3}.\n"
            "4. A move that overwrites a filled cell or does not match the solution is refused "
            f"but still uses a turn. You have {self.config.max_turns} turns."
        )

    def _render_state(self) -> str:
        scale = self.config.scale
        box = math.isqrt(scale)
        header = "    " + " | ".join(
            " ".join(f"C{col + 1}" for col in range(start, start + box))
            for start in range(0, scale, box)
        )
        lines = [header]
        for row in range(scale):
            if row and row % box == 0:
                lines.append("    " + "-" * (len(header) - 4))
            line = self._board[row * scale : (row + 1) * scale]
            cells = [str(value) if value else "." for value in line]
            groups = [
                " ".join(f"{cell:>2}" for cell in cells[start : start + box])
                for start in range(0, scale, box)
            ]
            lines.append(f"R{row + 1:<2} " + " | ".join(groups))
        return "Here is the current board layout:\n" + "\n".join(lines)

    def _move_hint(self) -> str:
        return "Enter your move: \\boxed{row column number}."

    def _parse_move(self, content: str) -> tuple[int, int, int] | None:
        match = _MOVE.fullmatch(content.strip())
        if match is None:
            return None
        row, col, number = (int(group) for group in match.groups())
        return row, col, number

    def _play(self, move: tuple[int, int, int]) -> MoveResult:
        row, col, number = move
        scale = self.config.scale
        where = f"R{row} C{col}"
        if not (1 <= row <= scale and 1 <= col <= scale and 1 <= number <= scale):
            return MoveResult(
                Outcome.ILLEGAL, f"placing {number} at {where} is out of bounds (1..{scale})."
            )
        index = (row - 1) * scale + (col - 1)
        if self._board[index]:
            return MoveResult(Outcome.ILLEGAL, f"{where} is already filled.")
        if self._solution[index] != number:
            return MoveResult(Outcome.ILLEGAL, f"placing {number} at {where} is not correct.")
        self._board[index] = number
        if 0 not in self._board:
            return MoveResult(Outcome.WON, "you completed the Sudoku puzzle. Congratulations!")
        return MoveResult(Outcome.PLAYED, f"you placed {number} at {where}, which is correct.")

    def _partial_credit(self) -> float:
        return 1.0 - self._board.count(0) / self._empty_at_start

    def _random_move(self, rng: random.Random) -> str:
        scale = self.config.scale
        return f"{rng.randint(1, scale)} {rng.randint(1, scale)} {rng.randint(1, scale)}"


def _full_grid(rng: random.Random, box: int) -> list[int]:
    """A random complete grid: a valid pattern under random symmetry-preserving shuffles."""
    scale = box * box

    def shuffled_lines() -> list[int]:
        groups = rng.sample(range(box), box)
        return [group * box + line for group in groups for line in rng.sample(range(box), box)]

    rows, cols = shuffled_lines(), shuffled_lines()
    digits = rng.sample(range(1, scale + 1), scale)
    grid = [digits[(box * (row % box) + row // box + col) % scale] for row in rows for col in cols]
    if rng.random() < 0.5:  # transpose
        grid = [grid[col * scale + row] for row in range(scale) for col in range(scale)]
    return grid


def _remove_cells(rng: random.Random, solution: list[int], box: int, clues: int) -> list[int]:
    """Empty cells in random order, skipping any whose removal allows a second solution."""
    puzzle = list(solution)
    filled = len(puzzle)
    for index in rng.sample(range(len(puzzle)), len(puzzle)):
        if filled <= clues:
            break
        puzzle[index] = 0
        if count_solutions(puzzle, box, limit=2) == 1:
            filled -= 1
        else:
            puzzle[index] = solution[index]
    return puzzle


def count_solutions(cells: list[int], box: int, limit: int = 2) -> int:
    """How many ways the grid (row-major, 0 = empty) can be completed, counting up to `limit`."""
    scale = box * box
    full = (1 << scale) - 1
    rows, cols, boxes = [0] * scale, [0] * scale, [0] * scale
    empties: list[int] = []
    for index, value in enumerate(cells):
        if value:
            row, col = divmod(index, scale)
            bit = 1 << (value - 1)
            rows[row] |= bit
            cols[col] |= bit
            boxes[(row // box) * box + col // box] |= bit
        else:
            empties.append(index)

    def search(budget: int) -> int:
        if not empties:
            return 1
        # Most constrained cell first keeps the search tiny.
        best_slot, best_mask, best_count = -1, 0, scale + 1
        for slot, index in enumerate(empties):
            row, col = divmod(index, scale)
            mask = full & ~(rows[row] | cols[col] | boxes[(row // box) * box + col // box])
            count = mask.bit_count()
            if count < best_count:
                best_slot, best_mask, best_count = slot, mask, count
                if count <= 1:
                    break
        if best_count == 0:
            return 0
        index = empties[best_slot]
        empties[best_slot] = empties[-1]
        empties.pop()
        row, col = divmod(index, scale)
        square = (row // box) * box + col // box
        total = 0
        mask = best_mask
        while mask and total < budget:
            bit = mask & -mask
            mask ^= bit
            rows[row] |= bit
            cols[col] |= bit
            boxes[square] |= bit
            total += search(budget - total)
            rows[row] ^= bit
            cols[col] ^= bit
            boxes[square] ^= bit
        empties.append(index)
        empties[best_slot], empties[-1] = empties[-1], empties[best_slot]
        return total

    return search(limit)
