"""Mastermind: find a hidden code from black and white pegs. Moves: ``\\boxed{1 2 3 4}``."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require

__all__ = ["MastermindConfig", "MastermindEnv"]

# GEM's random table: (code length, digits, turns).
_RANDOM_TABLE = ((2, 4, 10), (4, 6, 20), (4, 8, 30))
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class MastermindConfig:
    """Code length, digits 1..num_numbers, whether digits may repeat, and the turn limit."""

    code_length: int
    num_numbers: int
    duplicate_numbers: bool
    max_turns: int


class MastermindEnv(TextGame[MastermindConfig, tuple[int, ...]]):
    """GEM's Mastermind.

    A guess is digits separated by spaces (or commas). Illegal: wrong length, a digit out of
    range, or a guess already made. Partial credit on truncation: the most black pegs any
    guess earned, over the code length (GEM hands the same out as it goes).
    """

    title = "Mastermind"

    def __init__(
        self,
        code_length: int = 4,
        num_numbers: int = 6,
        duplicate_numbers: bool = False,
        max_turns: int = 20,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(code_length >= 1, f"Mastermind: code_length must be at least 1, got {code_length}")
        require(
            duplicate_numbers or num_numbers >= code_length,
            f"Mastermind: {num_numbers} digits cannot fill a code of {code_length} "
            "without duplicates",
        )
        require(num_numbers >= 2, f"Mastermind: num_numbers must be at least 2, got {num_numbers}")
        require(max_turns >= 1, f"Mastermind: max_turns must be at least 1, got {max_turns}")
        config = MastermindConfig(code_length, num_numbers, duplicate_numbers, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._code: tuple[int, ...] = ()
        self._tried: set[tuple[int, ...]] = set()
        self._lines: list[str] = []  # the rendered history, one line per guess
        self._best_black = 0

    def _random_config(self, rng: random.Random) -> MastermindConfig:
        length, digits, turns = rng.choice(_RANDOM_TABLE)
        return MastermindConfig(length, digits, self._fixed_config.duplicate_numbers, turns)

    def _new_game(self, rng: random.Random) -> None:
        digits = range(1, self.config.num_numbers + 1)
        length = self.config.code_length
        if self.config.duplicate_numbers:
            self._code = tuple(rng.choice(digits) for _ in range(length))
        else:
            self._code = tuple(rng.sample(digits, length))
        self._tried = set()
        self._lines = []
        self._best_black = 0

    @property
    def code(self) -> tuple[int, ...]:
        """The code to find."""
        return self._code

    def _instructions(self) -> str:
        config = self.config
        example = " ".join(str(digit) for digit in range(1, config.code_length + 1))
        repeats = "allowed" if config.duplicate_numbers else "not allowed"
        return (
            "You are playing Mastermind.\n"
            f"You have to guess the secret {config.code_length} digit code within "
            f"{config.max_turns} turns.\n"
            f"The code consists of digits from 1 to {config.num_numbers} (inclusive). "
            f"Duplicate numbers are {repeats}.\n"
            "After each guess you get black and white pegs: a black peg is a correct digit in "
            "the correct position, a white peg a correct digit in the wrong position.\n"
            f"Write your guess as digits separated by spaces inside \\boxed{{}}, for example "
            f"\\boxed{{{example}}}."
        )

    def _render_state(self) -> str:
        if not self._lines:
            return "No guesses yet."
        return "Your guesses so far:\n" + "\n".join(self._lines)

    def _move_hint(self) -> str:
        return f"Enter your guess: {self.config.code_length} digits inside \\boxed{{}}."

    def _parse_move(self, content: str) -> tuple[int, ...] | None:
        parts = [part for part in _SEPARATORS.split(content) if part]
        if not parts or not all(part.isdecimal() and part.isascii() for part in parts):
            return None
        return tuple(int(part) for part in parts)

    def _play(self, move: tuple[int, ...]) -> MoveResult:
        config = self.config
        shown = " ".join(map(str, move))
        if len(move) != config.code_length:
            return MoveResult(
                Outcome.ILLEGAL,
                f"you guessed {shown}, which has {len(move)} digits; the code has "
                f"{config.code_length}.",
            )
        if any(not 1 <= digit <= config.num_numbers for digit in move):
            return MoveResult(
                Outcome.ILLEGAL,
                f"you guessed {shown}, which has digits outside 1..{config.num_numbers}.",
            )
        if move in self._tried:
            return MoveResult(Outcome.ILLEGAL, f"you guessed {shown}, which you already tried.")
        black, white = score_guess(self._code, move)
        self._tried.add(move)
        self._lines.append(f"{shown} -> {black} black, {white} white")
        self._best_black = max(self._best_black, black)
        if black == config.code_length:
            return MoveResult(Outcome.WON, f"you guessed the code {shown}. Congratulations!")
        return MoveResult(
            Outcome.PLAYED,
            f"you guessed {shown}: {black} black peg(s) and {white} white peg(s).",
        )

    def _partial_credit(self) -> float:
        return self._best_black / self.config.code_length

    def _random_move(self, rng: random.Random) -> str:
        digits = range(1, self.config.num_numbers + 1)
        return " ".join(str(rng.choice(digits)) for _ in range(self.config.code_length))


def score_guess(code: tuple[int, ...], guess: tuple[int, ...]) -> tuple[int, int]:
    """Black pegs (right digit, right place) and white pegs (right digit, wrong place)."""
    black = sum(a == b for a, b in zip(code, guess, strict=True))
    common = sum(min(code.count(digit), guess.count(digit)) for digit in set(guess))
    return black, common - black
