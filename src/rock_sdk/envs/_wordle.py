"""Wordle: find a hidden word from letter-by-letter feedback. Moves: ``\\boxed{CRANE}``."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require
from ._words import WORD_LENGTHS, words_of_length

__all__ = ["WordleConfig", "WordleEnv", "wordle_feedback"]


@dataclass(frozen=True, slots=True)
class WordleConfig:
    """Word length, whether guesses must be listed words, and the turn limit."""

    word_length: int
    only_real_words: bool
    max_turns: int


class WordleEnv(TextGame[WordleConfig, str]):
    """GEM's Wordle over the shipped word list; feedback is G (green), Y (yellow), X (grey).

    A guess is letters only (spaces between them are ignored). Illegal: a guess of the wrong
    length, one already made, or, with ``only_real_words=True``, one not in the shipped list.
    Partial credit on truncation: the most greens any guess earned, over the word length.
    """

    title = "Wordle"

    def __init__(
        self,
        word_length: int = 5,
        only_real_words: bool = False,
        max_turns: int = 20,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(
            word_length in WORD_LENGTHS,
            f"Wordle: word_length must be between {WORD_LENGTHS.start} and "
            f"{WORD_LENGTHS.stop - 1}, got {word_length}",
        )
        require(max_turns >= 1, f"Wordle: max_turns must be at least 1, got {max_turns}")
        config = WordleConfig(word_length, only_real_words, max_turns)
        super().__init__(config, randomize=randomize, render_mode=render_mode)
        self._secret = ""
        self._tried: set[str] = set()
        self._lines: list[str] = []  # the rendered history, two lines per guess
        self._best_greens = 0

    def _random_config(self, rng: random.Random) -> WordleConfig:
        # GEM's random variant: 3 to 5 letters, five turns per letter.
        length = rng.randint(3, 5)
        return WordleConfig(length, self._fixed_config.only_real_words, length * 5)

    def _new_game(self, rng: random.Random) -> None:
        self._secret = rng.choice(words_of_length(self.config.word_length))
        self._tried = set()
        self._lines = []
        self._best_greens = 0

    @property
    def secret(self) -> str:
        """The word to find."""
        return self._secret

    def _instructions(self) -> str:
        config = self.config
        return (
            "You are playing Wordle.\n"
            f"You have to guess the secret {config.word_length}-letter word within "
            f"{config.max_turns} turns.\n"
            "After each guess every letter is marked:\n"
            "  - G (green): correct letter in the correct position\n"
            "  - Y (yellow): letter exists in the word but in the wrong position\n"
            "  - X (wrong): letter is not in the word\n"
            "Format your guess inside \\boxed{...}, for example \\boxed{"
            f"{words_of_length(config.word_length)[0]}"
            "}.\n"
            "The history of your guesses is shown below; use it to win before you run out "
            "of guesses."
        )

    def _render_state(self) -> str:
        if not self._lines:
            return "No guesses yet."
        return "Your guesses so far:\n" + "\n".join(self._lines)

    def _move_hint(self) -> str:
        return f"Enter your guess: a {self.config.word_length}-letter word inside \\boxed{{}}."

    def _parse_move(self, content: str) -> str | None:
        word = "".join(content.split()).upper()
        return word if word.isascii() and word.isalpha() else None

    def _play(self, move: str) -> MoveResult:
        config = self.config
        if len(move) != config.word_length:
            return MoveResult(
                Outcome.ILLEGAL,
                f"you guessed {move}, which has {len(move)} letters; the secret word has "
                f"{config.word_length}.",
            )
        if move in self._tried:
            return MoveResult(Outcome.ILLEGAL, f"you guessed {move}, which you already tried.")
        if config.only_real_words and move not in words_of_length(config.word_length):
            return MoveResult(Outcome.ILLEGAL, f"{move} is not in the word list.")
        feedback = wordle_feedback(self._secret, move)
        self._tried.add(move)
        self._lines += [move, " ".join(feedback)]
        self._best_greens = max(self._best_greens, feedback.count("G"))
        if move == self._secret:
            return MoveResult(Outcome.WON, f"you guessed the secret word {move}. Congratulations!")
        return MoveResult(
            Outcome.PLAYED, f"you guessed {move}\nFeedback:\n{move}\n{' '.join(feedback)}"
        )

    def _partial_credit(self) -> float:
        return self._best_greens / self.config.word_length

    def _random_move(self, rng: random.Random) -> str:
        return rng.choice(words_of_length(self.config.word_length))


def wordle_feedback(secret: str, guess: str) -> str:
    """One of G / Y / X per letter of `guess`, counting repeated letters as Wordle does."""
    marks = ["G" if g == s else "" for g, s in zip(guess, secret, strict=True)]
    unmatched = Counter(s for s, mark in zip(secret, marks, strict=True) if not mark)
    for index, letter in enumerate(guess):
        if marks[index]:
            continue
        if unmatched[letter]:
            unmatched[letter] -= 1
            marks[index] = "Y"
        else:
            marks[index] = "X"
    return "".join(marks)
