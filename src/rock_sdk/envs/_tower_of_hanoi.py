"""Tower of Hanoi: move every disk from tower A to tower C. Moves: ``\\boxed{A C}``."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require

__all__ = ["TowerofHanoiConfig", "TowerofHanoiEnv"]

# GEM's random table: (disks, turns).
_RANDOM_TABLE = ((3, 10), (4, 20), (5, 35))
_MOVE = re.compile(r"([ABC])\s*(?:,|->|to)?\s*([ABC])", re.IGNORECASE)
_TOWERS = "ABC"


@dataclass(frozen=True, slots=True)
class TowerofHanoiConfig:
    """Number of disks and turn limit."""

    num_disks: int
    max_turns: int


class TowerofHanoiEnv(TextGame[TowerofHanoiConfig, tuple[str, str]]):
    """GEM's Tower of Hanoi; disks are numbered by size, 1 the smallest.

    A move names the source tower, then the target (``A C``, ``A,C``, ``A->C``). Illegal: an
    empty source, a larger disk onto a smaller one, or the same tower twice. Partial credit
    on truncation: how many of the largest disks already sit in final order at the bottom of
    tower C, over the number of disks.
    """

    title = "Tower of Hanoi"

    def __init__(
        self,
        num_disks: int = 3,
        max_turns: int = 100,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(num_disks >= 1, f"Tower of Hanoi: num_disks must be at least 1, got {num_disks}")
        require(max_turns >= 1, f"Tower of Hanoi: max_turns must be at least 1, got {max_turns}")
        super().__init__(
            TowerofHanoiConfig(num_disks, max_turns), randomize=randomize, render_mode=render_mode
        )
        self._towers: dict[str, list[int]] = {name: [] for name in _TOWERS}

    def _random_config(self, rng: random.Random) -> TowerofHanoiConfig:
        return TowerofHanoiConfig(*rng.choice(_RANDOM_TABLE))

    def _new_game(self, rng: random.Random) -> None:
        self._towers = {"A": list(range(self.config.num_disks, 0, -1)), "B": [], "C": []}

    @property
    def towers(self) -> dict[str, list[int]]:
        """Each tower's disks, bottom first."""
        return {name: list(disks) for name, disks in self._towers.items()}

    def _instructions(self) -> str:
        return (
            f"You are playing Tower of Hanoi with {self.config.num_disks} disks.\n"
            "You have to move the disks from tower A to tower C.\n"
            "To move a disk, type the source tower and the target tower (e.g., '\\boxed{A C}').\n"
            "You can only move the top disk of a tower, and a bigger disk cannot be placed on a "
            "smaller disk.\n"
            f"You have {self.config.max_turns} turns."
        )

    def _render_state(self) -> str:
        lines = [f"{name}: {disks}" for name, disks in self._towers.items()]
        return "Here is the current state of the tower of hanoi:\n" + "\n".join(lines)

    def _move_hint(self) -> str:
        return "Enter your move: \\boxed{SOURCE TARGET}, e.g. \\boxed{A C}."

    def _parse_move(self, content: str) -> tuple[str, str] | None:
        match = _MOVE.fullmatch(content.strip())
        if match is None:
            return None
        return match.group(1).upper(), match.group(2).upper()

    def _play(self, move: tuple[str, str]) -> MoveResult:
        source, target = move
        if source == target:
            return MoveResult(Outcome.ILLEGAL, f"you tried to move from tower {source} to itself.")
        from_disks, to_disks = self._towers[source], self._towers[target]
        if not from_disks:
            return MoveResult(
                Outcome.ILLEGAL, f"you tried to move from tower {source}, which is empty."
            )
        if to_disks and from_disks[-1] > to_disks[-1]:
            return MoveResult(
                Outcome.ILLEGAL,
                f"you tried to put disk {from_disks[-1]} from tower {source} on the smaller "
                f"disk {to_disks[-1]} of tower {target}.",
            )
        disk = from_disks.pop()
        to_disks.append(disk)
        if len(self._towers["C"]) == self.config.num_disks:
            return MoveResult(Outcome.WON, "you solved the Tower of Hanoi. Congratulations!")
        return MoveResult(
            Outcome.PLAYED, f"you moved disk {disk} from tower {source} to tower {target}."
        )

    def _partial_credit(self) -> float:
        settled = 0
        for expected, disk in zip(
            range(self.config.num_disks, 0, -1), self._towers["C"], strict=False
        ):
            if disk != expected:
                break
            settled += 1
        return settled / self.config.num_disks

    def _random_move(self, rng: random.Random) -> str:
        source, target = rng.sample(_TOWERS, 2)
        return f"{source} {target}"
