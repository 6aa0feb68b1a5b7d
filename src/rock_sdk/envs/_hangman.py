"""Hangman: find a hidden word letter by letter. Moves: ``\\boxed{E}`` or ``\\boxed{HOUSE}``."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._game import MoveResult, Outcome, TextGame, require
from ._words import WORD_LENGTHS, words_of_length

__all__ = ["HangmanConfig", "HangmanEnv"]

# GEM's random table: (word length, turns).
_RANDOM_TABLE = ((3, 10), (5, 15), (7, 20))


@dataclass(frozen=True, slots=True)
class HangmanConfig:
    """Word length and turn limit."""

    word_length: int
    max_turns: int


class HangmanEnv(TextGame[HangmanConfig, str]):
    """GEM's Hangman over the shipped word list.

    A one-letter guess reveals that letter everywhere; a longer guess is a guess at the whole
    word. The game is won when the word is guessed or every letter is revealed. Illegal: a
    letter already guessed, or a word of the wrong length. Partial credit on truncation: the
    fraction of the word's letters revealed.
    """

    title = "Hangman"

    def __init__(
        self,
        word_length: int = 5,
        max_turns: int = 20,
        *,
        randomize: bool = False,
        render_mode: str | None = None,
    ) -> None:
        require(
            word_length in WORD_LENGTHS,
            f"Hangman: word_length must be between {WORD_LENGTHS.start} and "
            f"{WORD_LENGTHS.stop - 1}, got {word_length}",
        )
        require(max_turns >= 1, f"Hangman: max_turns must be at least 1, got {max_turns}")
        super().__init__(
            HangmanConfig(word_length, max_turns), randomize=randomize, render_mode=render_mode
        )
        self._secret = ""
        self._letters: set[str] = set()

    def _random_config(self, rng: random.Random) -> HangmanConfig:
        return HangmanConfig(*rng.choice(_RANDOM_TABLE))

    def _new_game(self, rng: random.Random) -> None:
        self._secret = rng.choice(words_of_length(self.config.word_length))
        self._letters = set()

    @property
    def secret(self) -> str:
        """The word to find."""
        return self._secret

    def _instructions(self) -> str:
        config = self.config
        return (
            "You are playing Hangman.\n"
            f"The objective of the game is to guess the {config.word_length}-letter word by "
            "guessing one letter at a time or the entire word.\n"
            "The letters still hidden are shown as '_'.\n"
            "Guess a letter like \\boxed{E}, or the entire word like \\boxed{"
            f"{'A' * config.word_length}"
            "}.\n"
            "If the letter is in the word, every occurrence of it is revealed; if the word is "
            "right, you win.\n"
            f"You can only guess one letter or word per turn, and you have to win within "
            f"{config.max_turns} turns."
        )

    def _render_state(self) -> str:
        header = " ".join(f"C{index:02}" for index in range(len(self._secret)))
        board = "   ".join(self._shown(letter) for letter in self._secret)
        guessed = ", ".join(sorted(self._letters)) or "none yet"
        return (
            f"Here is the current state of the Hangman grid:\n{header}\n  {board}\n"
            f"Letters guessed: {guessed}."
        )

    def _shown(self, letter: str) -> str:
        return letter if letter in self._letters else "_"

    def _move_hint(self) -> str:
        return "Enter your guess: one letter or the whole word inside \\boxed{}."

    def _parse_move(self, content: str) -> str | None:
        word = content.strip().upper()
        return word if word.isascii() and word.isalpha() else None

    def _play(self, move: str) -> MoveResult:
        if len(move) > 1:
            if move == self._secret:
                self._letters |= set(move)
                return MoveResult(Outcome.WON, f"you guessed the word {move}. Congratulations!")
            if len(move) != len(self._secret):
                return MoveResult(
                    Outcome.ILLEGAL,
                    f"you guessed {move}, which has {len(move)} letters; the word has "
                    f"{len(self._secret)}.",
                )
            return MoveResult(Outcome.PLAYED, f"you guessed {move}, which is not the word.")
        if move in self._letters:
            return MoveResult(Outcome.ILLEGAL, f"you already guessed the letter {move}.")
        self._letters.add(move)
        if move not in self._secret:
            return MoveResult(Outcome.PLAYED, f"the letter {move} is not in the word.")
        if set(self._secret) <= self._letters:
            return MoveResult(
                Outcome.WON, f"you revealed the word {self._secret}. Congratulations!"
            )
        return MoveResult(Outcome.PLAYED, f"the letter {move} is in the word.")

    def _partial_credit(self) -> float:
        revealed = sum(letter in self._letters for letter in self._secret)
        return revealed / len(self._secret)

    def _random_move(self, rng: random.Random) -> str:
        return rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
