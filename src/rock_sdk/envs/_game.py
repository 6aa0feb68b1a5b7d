"""The turn loop every text game shares, with GEM's reward conventions.

Rules of a turn, in order:
- No episode in progress (never reset, already over, or closed): `BadRequest`.
- The move is the content of the last complete ``\\boxed{...}`` in the action. No box, or a
  box the game cannot read, is a format error: reward `FORMAT_ERROR_REWARD`, terminated.
- A readable move the rules forbid is illegal: reward `ILLEGAL_MOVE_REWARD`, state unchanged
  (games must not change it; the rendered state is reused), the episode goes on and the turn
  still counts.
- A winning move earns `SUCCESS_REWARD` and terminates; a losing one (a mine, a stuck 2048
  board) terminates with the game's `_loss_reward()` (0.0 unless the game says otherwise).
- Any other legal move earns `STEP_REWARD`.
- If the episode is still running when the turn count reaches ``max_turns``, it is truncated
  and the reward of that last turn is the game's partial credit, a number in [0, 1).

``info`` always holds ``suffix`` (the rendered state and the move hint), ``turn``,
``max_turns`` and ``outcome`` (one of `Outcome`'s values, or ``"truncated"``).
"""

from __future__ import annotations

import abc
import enum
import random
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from rock_core import BadRequest

from ._boxed import last_boxed
from ._env import Env, ResetResult, StepResult

__all__ = [
    "FAIL_REWARD",
    "FORMAT_ERROR_REWARD",
    "ILLEGAL_MOVE_REWARD",
    "STEP_REWARD",
    "SUCCESS_REWARD",
    "GameConfig",
    "MoveResult",
    "Outcome",
    "TextGame",
    "require",
]

SUCCESS_REWARD = 1.0
STEP_REWARD = 0.0
FAIL_REWARD = 0.0
ILLEGAL_MOVE_REWARD = 0.0
FORMAT_ERROR_REWARD = -0.1


class Outcome(enum.Enum):
    """What one readable move did."""

    PLAYED = "played"
    ILLEGAL = "illegal"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class MoveResult:
    """A game's verdict on a move, and the sentence the player reads about it."""

    outcome: Outcome
    message: str


class GameConfig(Protocol):
    """What the turn loop needs from a game's parameters."""

    @property
    def max_turns(self) -> int:
        """Turns allowed before the episode is truncated."""
        ...


ConfigT = TypeVar("ConfigT", bound=GameConfig)
MoveT = TypeVar("MoveT")


def require(condition: bool, message: str) -> None:
    """Raise `BadRequest` with `message` unless `condition` holds (for parameter checks)."""
    if not condition:
        raise BadRequest(message)


class TextGame(Env, Generic[ConfigT, MoveT], abc.ABC):
    """A single-player text game driven by boxed moves; subclasses supply the rules.

    With ``randomize=True`` the parameters are drawn from the game's random table at every
    reset, from the episode's own random stream, so a seed fixes them too.
    """

    #: The game's display name, used in messages.
    title: str = "game"

    def __init__(
        self, config: ConfigT, *, randomize: bool = False, render_mode: str | None = None
    ) -> None:
        super().__init__(render_mode)
        self._fixed_config = config
        self._randomize = randomize
        self.config: ConfigT = config
        self._turn = 0
        self._running = False
        self._started = False
        self._action_rng = random.Random(0)
        self._rendered: str | None = None  # cache; an illegal move never changes the state

    # ---- the turn loop -------------------------------------------------------------------

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        """Start a new episode: the first observation is the rules, the state is in info."""
        rng = self._reseed(seed)
        self._action_rng = random.Random(rng.getrandbits(64))
        self.config = self._random_config(rng) if self._randomize else self._fixed_config
        self._turn = 0
        self._new_game(rng)
        self._rendered = None
        self._running = True
        self._started = True
        return self._instructions(), self._info("reset")

    def step(self, action: str) -> StepResult:
        """Play the last boxed move in `action`; see the module docstring for rewards."""
        if not self._running:
            raise BadRequest(f"{self.title}: no episode in progress; call reset() before step()")
        if not isinstance(action, str):
            raise BadRequest(f"{self.title}: an action is a string, got {type(action).__name__}")
        self._turn += 1
        content = last_boxed(action)
        move = None if content is None else self._parse_move(content)
        if move is None:
            self._running = False
            observation = (
                f"At turn {self._turn}, your action could not be read as a move. "
                f"{self._move_hint()}"
            )
            return observation, FORMAT_ERROR_REWARD, True, False, self._info("format_error")
        result = self._play(move)
        if result.outcome is not Outcome.ILLEGAL:
            self._rendered = None
        observation = f"At turn {self._turn}, {result.message}"
        outcome = result.outcome.value
        terminated = result.outcome in (Outcome.WON, Outcome.LOST)
        truncated = False
        if result.outcome is Outcome.WON:
            reward = SUCCESS_REWARD
        elif result.outcome is Outcome.LOST:
            reward = self._loss_reward()
        elif result.outcome is Outcome.ILLEGAL:
            reward = ILLEGAL_MOVE_REWARD
        else:
            reward = STEP_REWARD
        if not terminated and self._turn >= self.config.max_turns:
            truncated = True
            reward = self._partial_credit()
            outcome = "truncated"
            observation += f"\nYou have reached the maximum number of turns ({self._turn})."
        self._running = not (terminated or truncated)
        return observation, reward, terminated, truncated, self._info(outcome)

    def close(self) -> None:
        """End the episode in progress, if any; `reset` starts a new one."""
        self._running = False

    def render(self) -> str | None:
        """The current state as text when ``render_mode="ansi"``, else None."""
        if self.render_mode != "ansi" or not self._started:
            return None
        return self._state_text()

    def sample_random_action(self) -> str:
        """A random well-formed boxed move (not necessarily legal), from its own stream."""
        return f"\\boxed{{{self._random_move(self._action_rng)}}}"

    @property
    def turn(self) -> int:
        """Turns played in the current episode."""
        return self._turn

    @property
    def partial_credit(self) -> float:
        """The reward a truncation would give now, in [0, 1)."""
        return self._partial_credit()

    def _state_text(self) -> str:
        if self._rendered is None:
            self._rendered = self._render_state()
        return self._rendered

    def _info(self, outcome: str) -> dict[str, Any]:
        return {
            "suffix": f"{self._state_text()}\n{self._move_hint()}",
            "turn": self._turn,
            "max_turns": self.config.max_turns,
            "outcome": outcome,
        }

    # ---- what each game supplies -----------------------------------------------------------

    @abc.abstractmethod
    def _random_config(self, rng: random.Random) -> ConfigT:
        """Parameters for a ``-random`` episode, drawn from `rng`."""

    @abc.abstractmethod
    def _new_game(self, rng: random.Random) -> None:
        """Set up a fresh episode for `self.config`, drawing all randomness from `rng`."""

    @abc.abstractmethod
    def _instructions(self) -> str:
        """The rules, shown as the first observation."""

    @abc.abstractmethod
    def _render_state(self) -> str:
        """The current state as text (the board, the guesses so far)."""

    @abc.abstractmethod
    def _move_hint(self) -> str:
        """One sentence saying how to write a move."""

    @abc.abstractmethod
    def _parse_move(self, content: str) -> MoveT | None:
        """The move written in a box's content, or None if it is not a move at all."""

    @abc.abstractmethod
    def _play(self, move: MoveT) -> MoveResult:
        """Apply a readable move (or refuse it as illegal) and say what happened."""

    @abc.abstractmethod
    def _partial_credit(self) -> float:
        """Progress so far, in [0, 1): the reward when the turn limit cuts the game."""

    @abc.abstractmethod
    def _random_move(self, rng: random.Random) -> str:
        """The content of a random well-formed move."""

    def _loss_reward(self) -> float:
        """Reward for a losing move; games where losing still shows progress override this."""
        return FAIL_REWARD
