"""Sokoban: push every box onto a target. Moves are ``\\boxed{up}`` and its three siblings."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._direction_game import DirectionGame
from ._game import MoveResult, Outcome, require
from ._grid import DIRECTION_HINT
from ._sokoban_level import Level, generate_level, offsets

__all__ = ["SokobanConfig", "SokobanEnv"]

# GEM's random table: (room, boxes, turns).
_RANDOM_TABLE = (((6, 6), 2, 20), ((8, 8), 5, 50))

_SYMBOLS = {
    (False, False, False): "_",
    (False, False, True): "O",
    (True, False, False): "X",
    (True, False, True): "√",
    (False, True, False): "P",
    (False, True, True): "S",
}


@dataclass(frozen=True, slots=True)
class SokobanConfig:
    """Room size (rows, columns), number of boxes and turn limit."""

    dim_room: tuple[int, int]
    num_boxes: int
    max_turns: int


class SokobanEnv(DirectionGame[SokobanConfig]):
    """GEM's Sokoban with levels made by reverse play: always solvable within the turn limit.

    Partial credit on truncation: the fraction of boxes standing on targets.
    """

    title = "Sokoban"

    def __init__(
        self,
        dim_room: tuple[int, int] = (6, 6),
        num_boxes: int = 3,
        max_turns: int = 100,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        rows, cols = dim_room
        require(
            rows >= 5 and cols >= 5, f"Sokoban: dim_room must be at least (5, 5), got {dim_room}"
        )
        require(num_boxes >= 1, f"Sokoban: num_boxes must be at least 1, got {num_boxes}")
        require(max_turns >= 1, f"Sokoban: max_turns must be at least 1, got {max_turns}")
        config = SokobanConfig((rows, cols), num_boxes, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._level: Level | None = None
        self._boxes: set[int] = set()
        self._player = 0

    def _random_config(self, rng: random.Random) -> SokobanConfig:
        dim_room, num_boxes, max_turns = rng.choice(_RANDOM_TABLE)
        return SokobanConfig(dim_room, num_boxes, max_turns)

    def _new_game(self, rng: random.Random) -> None:
        rows, cols = self.config.dim_room
        self._level = generate_level(rng, rows, cols, self.config.num_boxes, self.config.max_turns)
        self._boxes = set(self._level.boxes)
        self._player = self._level.player

    @property
    def level(self) -> Level:
        """The level this episode started from."""
        assert self._level is not None, "reset() first"
        return self._level

    def _instructions(self) -> str:
        return (
            "You are solving the Sokoban puzzle. You are the player and you need to push all "
            "boxes to targets.\n"
            "When you are right next to a box, you can push it by moving in the same direction.\n"
            "You cannot push a box through a wall or another box, and you cannot pull a box.\n"
            f"You have to complete the puzzle within {self.config.max_turns} turns.\n"
            "On the board, objects are represented as:\n"
            "- The player (you) appears as 'P' ('S' when standing on a target)\n"
            "- Walls are represented with '#'\n"
            "- Boxes are marked as 'X'\n"
            "- Empty targets are shown with 'O'\n"
            "- Boxes on targets are visualized with '√'\n"
            "- Empty floor is shown as '_'\n\n"
            f"To submit your move, type one of {DIRECTION_HINT}.\n"
            "Use logic and deduction to push all boxes onto the target positions!"
        )

    def _render_state(self) -> str:
        level = self.level
        lines = []
        for row in range(level.height):
            cells = []
            for col in range(level.width):
                cell = row * level.width + col
                if cell not in level.floor:
                    cells.append("#")
                    continue
                key = (cell in self._boxes, cell == self._player, cell in level.targets)
                cells.append(_SYMBOLS[key])
            lines.append(" ".join(cells))
        return "Here is the current board layout:\n" + "\n".join(lines)

    def _play(self, move: str) -> MoveResult:
        level = self.level
        delta = offsets(level.width)[move]
        ahead = self._player + delta
        if ahead not in level.floor:
            return MoveResult(Outcome.ILLEGAL, f"you cannot move {move}: there is a wall.")
        pushed = ahead in self._boxes
        if pushed:
            beyond = ahead + delta
            if beyond not in level.floor or beyond in self._boxes:
                return MoveResult(
                    Outcome.ILLEGAL,
                    f"you cannot move {move}: the box would hit a wall or another box.",
                )
            self._boxes.remove(ahead)
            self._boxes.add(beyond)
        self._player = ahead
        if self._boxes <= level.targets:
            return MoveResult(Outcome.WON, "you solved the Sokoban puzzle. Congratulations!")
        verb = "pushed a box" if pushed else "moved"
        return MoveResult(Outcome.PLAYED, f"you {verb} {move}.")

    def _partial_credit(self) -> float:
        return len(self._boxes & self.level.targets) / self.config.num_boxes
