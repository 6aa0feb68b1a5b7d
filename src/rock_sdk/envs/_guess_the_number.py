"""Guess the Number: find a hidden integer from "higher" / "lower" hints. Moves: ``\\boxed{7}``."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require

__all__ = ["GuessTheNumberConfig", "GuessTheNumberEnv"]


@dataclass(frozen=True, slots=True)
class GuessTheNumberConfig:
    """The inclusive range the number is drawn from, and the turn limit."""

    min_number: int
    max_number: int
    max_turns: int


class GuessTheNumberEnv(TextGame[GuessTheNumberConfig, int]):
    """GEM's Guess the Number.

    Illegal: a guess outside the range, or one already made. Partial credit on truncation:
    ``1 - |closest guess - target| / (max_number - min_number)`` over the legal guesses made
    (0.0 if none), as GEM scores the last guess.
    """

    title = "Guess the Number"

    def __init__(
        self,
        min_number: int = 1,
        max_number: int = 20,
        max_turns: int = 20,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(
            min_number < max_number,
            f"Guess the Number: min_number ({min_number}) must be below max_number ({max_number})",
        )
        require(max_turns >= 1, f"Guess the Number: max_turns must be at least 1, got {max_turns}")
        config = GuessTheNumberConfig(min_number, max_number, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._target = min_number
        self._guesses: list[int] = []

    def _random_config(self, rng: random.Random) -> GuessTheNumberConfig:
        # GEM's random variant: a random range, and just enough turns for a binary search.
        low = rng.randint(1, 10)
        high = rng.randint(low + 5, low + 50)
        return GuessTheNumberConfig(low, high, math.ceil(math.sqrt(high - low)) + 1)

    def _new_game(self, rng: random.Random) -> None:
        self._target = rng.randint(self.config.min_number, self.config.max_number)
        self._guesses = []

    @property
    def target(self) -> int:
        """The number to find."""
        return self._target

    def _instructions(self) -> str:
        low, high = self.config.min_number, self.config.max_number
        return (
            "You are playing Guess The Number.\n"
            f"You have to guess the number between {low} and {high} (inclusive) "
            f"within {self.config.max_turns} turns.\n"
            "After each guess you will be told whether the target number is higher or lower.\n"
            "You may answer in any manner; only the number in the last \\boxed{} counts as "
            "your guess, for example \\boxed{"
            f"{(low + high) // 2}"
            "}.\n"
            "Enter your first guess to start the game."
        )

    def _render_state(self) -> str:
        guesses = ", ".join(str(guess) for guess in self._guesses) or "none yet"
        return (
            f"The number is between {self.config.min_number} and {self.config.max_number}. "
            f"Your guesses so far: {guesses}."
        )

    def _move_hint(self) -> str:
        return "Enter your next guess as \\boxed{number}."

    def _parse_move(self, content: str) -> int | None:
        text = content.strip()
        digits = text[1:] if text[:1] in "+-" else text
        return int(text) if digits.isdecimal() and digits.isascii() else None

    def _play(self, move: int) -> MoveResult:
        low, high = self.config.min_number, self.config.max_number
        if not low <= move <= high:
            return MoveResult(
                Outcome.ILLEGAL, f"you guessed {move}, which is outside {low}..{high}."
            )
        if move in self._guesses:
            return MoveResult(Outcome.ILLEGAL, f"you guessed {move}, which you already tried.")
        self._guesses.append(move)
        if move == self._target:
            return MoveResult(Outcome.WON, f"you guessed the number {move}. Congratulations!")
        hint = "lower" if move > self._target else "higher"
        return MoveResult(
            Outcome.PLAYED, f"you guessed {move}, and the target number is {hint} than {move}."
        )

    def _partial_credit(self) -> float:
        if not self._guesses:
            return 0.0
        span = self.config.max_number - self.config.min_number
        closest = min(abs(guess - self._target) for guess in self._guesses)
        return 1.0 - closest / span

    def _random_move(self, rng: random.Random) -> str:
        return str(rng.randint(self.config.min_number, self.config.max_number))
